"""What a task is: a vocabulary, a length range and a seeded generator of labelled sequences.

Two kinds of task, as in the D-RASP paper (docs/extractor.md, Tasks and token layout):

- `mode = "lm"`: next-token prediction with cross-entropy. A sequence is
  `<bos> prompt <sep> answer`; only the answer tokens are scored (teacher forcing).
- `mode = "bce"`: next-token *sets* of a formal language. A sequence is `<bos> word <eos>`;
  at every position the model says, per vocabulary entry, whether it may come next.

A user task is a subclass of `PromptAnswerTask` (write `prompt_answer`) or of `Task`, registered
with `extractor.tasks.registry.register`; or a JSON Lines file (extractor/tasks/jsonl_tasks.py).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
from attrs import frozen

from extractor.tasks.vocabulary import Vocabulary

IGNORE = -100          # a target that is not scored (PyTorch's cross-entropy ignore_index)
MAX_TEST_LENGTH = 150  # the paper's longest evaluated length; vocabularies and positions use it
TRAIN_LENGTHS = (0, 50)
TEST_BUCKETS = ((0, 50), (51, 100), (101, 150))


@frozen(eq=False)
class Example:
    """One labelled sequence.

    tokens: ids, starting with <bos>. targets: for "lm" tasks an int array of len(tokens),
    targets[t] the id to predict after tokens[:t+1] or IGNORE; for "bce" tasks a 0/1 array
    [len(tokens), vocabulary size] of the tokens allowed after tokens[:t+1], where an all-zero
    row is not scored. offset: the position id of tokens[0] (0 in evaluation sets). length: the
    task's length n (the bucket the example belongs to).
    """
    tokens: np.ndarray
    targets: np.ndarray
    offset: int
    length: int

    @property
    def positions(self) -> np.ndarray:
        return np.arange(self.offset, self.offset + len(self.tokens))


class Task(ABC):
    """A named task. Subclasses set the class attributes and write `example`."""

    name: str = "task"
    mode: str = "lm"                     # "lm" (cross-entropy) or "bce" (next-token sets)
    description: str = ""
    min_length: int = 0                  # shorter lengths are raised to this, as the paper does
    max_length: int = MAX_TEST_LENGTH    # the longest length n the task can generate
    train_lengths: tuple[int, int] = TRAIN_LENGTHS

    @property
    @abstractmethod
    def vocab(self) -> Vocabulary:
        """The task's vocabulary (symbols, then <bos> <sep> <eos> <pad>)."""

    @property
    @abstractmethod
    def n_positions(self) -> int:
        """Positions a model needs: the longest sequence at the largest training offset."""

    @abstractmethod
    def example(self, rng: np.random.Generator, n: int, offset: bool) -> Example:
        """One example of length n; with offset=True, a random position offset (training)."""

    def valid_length(self, n: int) -> bool:
        """Whether the task has examples of length n (e.g. Dyck words have even lengths)."""
        return True

    def lengths(self, lo: int, hi: int) -> list[int]:
        """The valid lengths in [max(lo, min_length), hi]."""
        cache = self.__dict__.setdefault("_lengths", {})
        if (lo, hi) not in cache:
            cache[lo, hi] = [n for n in range(max(lo, self.min_length), hi + 1)
                             if self.valid_length(n)]
        return cache[lo, hi]

    def draw_length(self, rng: np.random.Generator, lo: int, hi: int) -> int:
        """A length drawn uniformly from the valid lengths in the range."""
        choices = self.lengths(lo, hi)
        if not choices:
            raise ValueError(f"task {self.name} has no examples with lengths {lo}-{hi}")
        return choices[int(rng.integers(len(choices)))]

    def sample(self, rng: np.random.Generator, lo: int, hi: int, offset: bool) -> Example:
        return self.example(rng, self.draw_length(rng, lo, hi), offset)

    def evaluation_set(self, lo: int, hi: int, n: int, seed: int = 0) -> list[Example]:
        """A fixed set of n examples with lengths in [lo, hi] and position offset 0.

        Each bucket has its own random stream (from seed, lo, hi), so a bucket's examples do
        not depend on which other buckets are evaluated.
        """
        rng = np.random.default_rng([seed, lo, hi])
        return [self.sample(rng, lo, hi, offset=False) for _ in range(n)]

    def training_stream(self, seed: int = 0):
        """An endless iterator of training examples (lengths in train_lengths, random offsets)."""
        rng = np.random.default_rng([seed, 2**31 - 1])   # never the stream of an eval bucket
        lo, hi = self.train_lengths
        while True:
            yield self.sample(rng, lo, hi, offset=True)

    @property
    def test_buckets(self) -> list[tuple[int, int]]:
        """The length buckets evaluated by default: the paper's (0-50, 51-100, 101-150), cut
        at max_length."""
        return [(lo, min(hi, self.max_length)) for lo, hi in TEST_BUCKETS
                if lo <= self.max_length]

    def metadata(self) -> dict:
        """What a checkpoint records about its task (JSON-ready); "task" reloads it."""
        return {"task": getattr(self, "spec", self.name), "mode": self.mode,
                "vocab": list(self.vocab.tokens), "train_lengths": list(self.train_lengths),
                "max_length": self.max_length}


class PromptAnswerTask(Task):
    """A language-modelling task `<bos> prompt <sep> answer`; the answer tokens are scored.

    Subclasses set `symbols` and write `prompt_answer(rng, n) -> (prompt ids, answer ids)`;
    `self.vocab` turns names into ids (`self.vocab.ids(["a", "<eos>"])`). The position offset
    of training examples is uniform in [0, max_offset(n, sequence length)].
    """

    mode = "lm"
    symbols: tuple[str, ...] = ()

    @property
    def vocab(self) -> Vocabulary:
        vocab = self.__dict__.get("_vocab")
        if vocab is None:
            vocab = self.__dict__["_vocab"] = Vocabulary(self.symbols)
        return vocab

    @property
    def n_positions(self) -> int:
        # The paper's default for tasks with a one-token answer: 150 + 4.
        return self.max_length + 4

    def max_offset(self, n: int, sequence_length: int) -> int:
        """The largest training offset; the paper's default is max_length - n."""
        return self.max_length - n

    @abstractmethod
    def prompt_answer(self, rng: np.random.Generator, n: int) -> tuple[list[int], list[int]]:
        """The prompt and answer ids (without <bos> and <sep>) of an example of length n."""

    def example(self, rng: np.random.Generator, n: int, offset: bool) -> Example:
        prompt, answer = self.prompt_answer(rng, n)
        v = self.vocab
        tokens = np.array([v.bos, *prompt, v.sep, *answer], dtype=np.int64)
        targets = np.full(len(tokens), IGNORE, dtype=np.int64)
        start = len(prompt) + 1                  # the <sep> position predicts answer[0]
        targets[start:len(tokens) - 1] = tokens[start + 1:]
        shift = int(rng.integers(self.max_offset(n, len(tokens)) + 1)) if offset else 0
        return Example(tokens, targets, shift, n)
