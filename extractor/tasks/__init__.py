"""What a model was trained on and how it is scored.

The names a user's own task needs are here: subclass `PromptAnswerTask` (or `Task`) and
`register` it; `get_task` finds a task by name, JSON Lines file or `FILE.py:Class`.
"""

from extractor.tasks.base import (
                                  IGNORE,
                                  MAX_TEST_LENGTH,
                                  TEST_BUCKETS,
                                  TRAIN_LENGTHS,
                                  Example,
                                  PromptAnswerTask,
                                  Task,
)
from extractor.tasks.registry import get_task, register, task_names
from extractor.tasks.vocabulary import Vocabulary

__all__ = ["IGNORE", "MAX_TEST_LENGTH", "TEST_BUCKETS", "TRAIN_LENGTHS", "Example",
           "PromptAnswerTask", "Task", "Vocabulary", "get_task", "register", "task_names"]
