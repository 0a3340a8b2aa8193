"""Checkpoint → program, in four rooms.

- `extractor.tasks`: what a model was trained on and how it is scored (vocabulary, task
  families, registry, batches, evaluation, a checkpoint's task).
- `extractor.training`: training small GPT-2 models on a task.
- `extractor.checking`: does a program behave like a model? (judges, `rasp verify`, the
  compile-back round trip).
- `extractor.decompile`: checkpoint → short program (LLN-A, paths, circuit, pruning, sweep,
  primitives, the compiled-model pipeline, the extraction driver).

Directions: decompile → checking → tasks; training → tasks.
"""
