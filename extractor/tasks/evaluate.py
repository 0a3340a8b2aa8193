"""Per-length-bucket accuracy of a model on a task, with the paper's per-sequence metric."""

from __future__ import annotations

import re
import sys

import torch

from extractor.tasks.base import TEST_BUCKETS, Example, Task
from extractor.tasks.batches import collate, correct, length_sorted_chunks
from rasp_ir.diagnostics import Diagnostic, RaspError

Bucket = tuple[int, int]
MAX_TOKENS = 1 << 15          # padded tokens per forward pass in evaluation


def bucket_name(bucket: Bucket) -> str:
    return f"{bucket[0]}-{bucket[1]}"


def parse_buckets(text: str | None, default: list[Bucket] | None = None) -> list[Bucket]:
    """'0-50,51-100' -> [(0, 50), (51, 100)]; None -> default (the paper's three buckets)."""
    if text is None:
        return list(default or TEST_BUCKETS)
    buckets = []
    for part in text.split(","):
        match = re.fullmatch(r"\s*(\d+)\s*-\s*(\d+)\s*|\s*(\d+)\s*", part)
        if not match:
            raise RaspError([Diagnostic("T404", f"bad length bucket '{part.strip()}'",
                                        hint="write buckets as LO-HI[,LO-HI...], e.g. "
                                        "0-50,51-100,101-150")])
        lo, hi = (int(match[1]), int(match[2])) if match[1] else (int(match[3]),) * 2
        if lo > hi:
            raise RaspError([Diagnostic("T404", f"length bucket '{part.strip()}' is empty "
                                        f"({lo} > {hi})")])
        buckets.append((lo, hi))
    return buckets


def check_buckets(task: Task, buckets: list[Bucket]) -> None:
    """RaspError T404 for a bucket the task has no lengths in, or longer than it supports."""
    problems = []
    for lo, hi in buckets:
        if hi > task.max_length:
            problems.append(f"bucket {lo}-{hi} goes beyond length {task.max_length}, the "
                            f"longest task {task.name} supports")
        elif not task.lengths(lo, hi):
            problems.append(f"task {task.name} has no examples with lengths {lo}-{hi} "
                            f"(its lengths start at {task.min_length})")
    if problems:
        raise RaspError([Diagnostic("T404", p) for p in problems])


def evaluation_sets(task: Task, buckets: list[Bucket], n: int, seed: int,
                    n_positions: int | None = None) -> dict[str, list[Example]]:
    """The fixed evaluation set of each bucket; T403 if a sequence needs more positions than
    the model has."""
    check_buckets(task, buckets)
    sets = {bucket_name(b): task.evaluation_set(*b, n, seed) for b in buckets}
    if n_positions is not None:
        for name, examples in sets.items():
            longest = max((len(e.tokens) for e in examples), default=0)
            if longest > n_positions:
                raise RaspError([Diagnostic(
                    "T403", f"bucket {name} of task {task.name} has sequences of {longest} "
                    f"tokens; the model has only {n_positions} positions")])
    return sets


@torch.inference_mode()
def accuracy(model, task: Task, examples: list[Example], progress=None) -> float:
    """Fraction of examples the model gets entirely right (teacher forcing, offset 0)."""
    if not examples:
        return float("nan")
    right = 0
    for chunk in length_sorted_chunks(examples, MAX_TOKENS):
        batch = collate(chunk, task.vocab.pad, task.mode)
        logits = model(batch.tokens, position_ids=batch.positions)
        right += int(correct(logits, batch).sum())
        if progress is not None:
            progress.update(len(chunk))
    return right / len(examples)


def evaluate(model, task: Task, buckets: list[Bucket] | None = None, n: int = 2000,
             seed: int = 0, progress=False) -> dict[str, float]:
    """{bucket name: accuracy} on n fixed examples per bucket (the paper's buckets by default).

    progress: True draws a progress bar on stderr; a display object (see `progress_bar`) draws
    its own.
    """
    sets = evaluation_sets(task, buckets or task.test_buckets, n, seed, model.config.n_positions)
    model.eval()
    total = sum(len(s) for s in sets.values())
    bar = progress_bar(total, "eval", enabled=progress)
    try:
        return {name: accuracy(model, task, examples, bar) for name, examples in sets.items()}
    finally:
        bar.close()


def progress_bar(total: int, description: str, enabled=True, unit: str = "seq"):
    """A progress bar: `enabled` is True (a tqdm bar on stderr), False (a do-nothing bar) or a
    display with a `bar(total, description, unit)` method, such as the command line's
    (rasp_ir/cli/progress.py: log lines when stderr is not a terminal)."""
    if hasattr(enabled, "bar"):
        return enabled.bar(total, description, unit)
    from tqdm import tqdm
    return tqdm(total=total, desc=description, file=sys.stderr, disable=not enabled,
                leave=False, dynamic_ncols=True, unit=unit)
