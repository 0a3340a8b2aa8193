"""How well a program stands in for the model it was extracted from, per length bucket.

A program is judged by running it with the reference interpreter on fixed sequences (offset 0)
and comparing with the original model (not the linearised one):
- match: the fraction of sequences on which the program predicts what the model predicts at
  every scored position (the argmax for next-token tasks, the set of tokens above 1/2 for
  next-token-set tasks);
- task: the fraction the program gets right against the task's labels.
Agreement is rasp_ir/agreement.py's rule, as for `rasp verify` and `rasp equiv`.

The sequences come from the evaluation sets of `rasp eval` (extractor/tasks/evaluate.py) for the
reported numbers, and from a stream with its own seed for the choices made during extraction,
so no choice is made on the sequences that measure it.
"""

from __future__ import annotations

import copy
import time

import numpy as np
import torch

from extractor.checking.threads import all_threads
from extractor.tasks.base import IGNORE, Example
from extractor.tasks.batches import collate, length_sorted_chunks
from extractor.tasks.evaluate import MAX_TOKENS, evaluation_sets
from rasp_ir import agreement as rule
from rasp_ir.interpreter import Interpreter, Memo, evaluate


class Judge:
    """Fixed sequences per bucket with the model's predictions and the labels cached."""

    CHUNK = 20            # sequences evaluated between two looks at the running counts

    def __init__(self, model, task, sets: dict[str, list[Example]], device: str = "cpu"):
        """`device`: where the model's predictions are computed (the program runs on the
        CPU, in the interpreter)."""
        started = time.perf_counter()
        self.task = task
        self.sets = {}
        vocab = task.vocab
        if device != "cpu":
            model = copy.deepcopy(model).to(device)
        for name, examples in sets.items():
            rows = []
            for chunk in length_sorted_chunks(examples, MAX_TOKENS):
                batch = collate(chunk, vocab.pad, task.mode)
                with torch.no_grad(), all_threads():
                    logits = model(batch.tokens.to(device), position_ids=batch.positions.to(
                        device)).double().cpu().numpy()
                for i, e in enumerate(chunk):
                    n = len(e.tokens)
                    rows.append((vocab.names(e.tokens), decide(logits[i, :n], task.mode),
                                 _gold(e, task.mode), batch.scored[i, :n].numpy()))
            self.sets[name] = rows
        # chunks of CHUNK sequences, shortest first: `passes` stops after the chunk that sinks
        # a bucket below its floor (most programs an extraction judges are rejected, and most
        # of those early); the programs judged in a row differ in a binding or two, so each
        # chunk keeps the values of the rest (a chunk not evaluated does not age its memo)
        self.chunks = {}
        for name, rows in self.sets.items():
            order = sorted(range(len(rows)), key=lambda i: len(rows[i][0]))
            self.chunks[name] = [(order[i:i + self.CHUNK], Memo())
                                 for i in range(0, len(order), self.CHUNK)]
        # seconds spent building the sets and judging programs (the report's "judging")
        self.seconds = time.perf_counter() - started

    @classmethod
    def held_out(cls, model, task, n: int, seed: int, device: str = "cpu") -> "Judge":
        """The evaluation sets of `rasp eval --n n --seed seed`."""
        return cls(model, task, evaluation_sets(task, task.test_buckets, n, seed,
                                                model.config.n_positions), device)

    @classmethod
    def selection(cls, model, task, n: int, seed: int, device: str = "cpu") -> "Judge":
        """n sequences per bucket from a stream of their own (for choices, not reports)."""
        rng = np.random.default_rng([seed, 4242])
        return cls(model, task, {f"{lo}-{hi}": [task.sample(rng, lo, hi, offset=False)
                                                for _ in range(n)]
                                 for lo, hi in task.test_buckets}, device)

    def __call__(self, program, task_accuracy: bool = False) -> dict:
        """{bucket: match} (with task_accuracy: {bucket: {"match": …, "task": …}})."""
        interpreter = Interpreter(program)
        out = {}
        for name, chunks in self.chunks.items():
            same = right = 0
            for chunk in chunks:
                s, r = self._chunk(program, interpreter, name, chunk, task_accuracy)
                same, right = same + s, right + r
            n = max(len(self.sets[name]), 1)
            out[name] = {"match": same / n, "task": right / n} if task_accuracy else same / n
        return out

    def passes(self, program, floor: dict) -> dict | None:
        """{bucket: match} when the match of every bucket is at least floor[bucket], else None.
        The same decision as comparing `self(program)` with the floors, made sooner: chunks
        go round the buckets, cheapest first, and the judging stops at the first bucket whose
        mismatches already outnumber what its floor allows."""
        counts = self.counts(program, floor)
        return None if counts is None else {b: same / max(n, 1) for b, (same, n) in
                                            counts.items()}

    def counts(self, program, floor: dict, prior: dict | None = None) -> dict | None:
        """{bucket: (sequences matched, sequences)} over the buckets of `floor`, pooled with
        `prior` {bucket: (matched, sequences)} judged elsewhere; None as soon as a bucket's
        pooled match can no longer reach floor[bucket] (see `passes`)."""
        prior = prior or {}
        interpreter = Interpreter(program)
        count = {name: len(self.sets[name]) + prior.get(name, (0, 0))[1] for name in floor}
        size = {name: max(c, 1) for name, c in count.items()}
        wrong = {name: prior[name][1] - prior[name][0] if name in prior else 0
                 for name in floor}
        rounds = max((len(self.chunks[name]) for name in floor), default=0)
        for i in range(rounds):
            for name in floor:
                chunks = self.chunks[name]
                if i >= len(chunks):
                    continue
                same, _ = self._chunk(program, interpreter, name, chunks[i], False)
                wrong[name] += len(chunks[i][0]) - same
                # out of reach even if every sequence not yet judged agreed
                if (count[name] - wrong[name]) / size[name] < floor[name]:
                    return None
        return {name: (count[name] - wrong[name], count[name]) for name in floor}

    def _chunk(self, program, interpreter, name, chunk, task_accuracy) -> tuple[int, int]:
        """(sequences matched, sequences right) among one chunk of a bucket."""
        started = time.perf_counter()
        indices, memo = chunk
        rows = [self.sets[name][i] for i in indices]
        got = evaluate(program, [r[0] for r in rows], program.output,
                       interpreter=interpreter, memo=memo)
        mode = self.task.mode
        same = right = 0
        for (_, model_pred, gold, scored), values in zip(rows, got):
            pred = _decide_output(np.asarray(values), mode)
            same += bool(rule.sequences_agree(same_decisions(pred, model_pred, mode), scored))
            if task_accuracy:
                right += bool(rule.sequences_agree(same_decisions(pred, gold, mode), scored))
        self.seconds += time.perf_counter() - started
        return same, right


class SequentialJudge:
    """The choice set, confirmed on fresh sequences when a decision is close.

    A decision is first made on the choice set (`Judge.selection`, n per bucket). Where a
    bucket's match is within Z standard errors of the line it is compared with, that bucket is
    judged again on fresh sequences (a stream with a seed of its own, disjoint from the choice
    set and the held-out sets), and the counts are pooled: `totals` gives the sequences per
    bucket after each confirmation (400 and 1,600 by default). A candidate that passes with a
    margin is accepted as before; one that passes narrowly is accepted only if the pooled
    count still reaches the floor; one that fails on the choice set is rejected as before.
    A confirmation set is built (the model run on it) per bucket, the first time that bucket
    needs it.

    Why these numbers (docs/extractor.md, Judging): near a match of 0.9 the standard error is
    0.030 on 100 sequences, 0.015 on 400 and 0.0075 on 1,600; a candidate still within two of
    them of its floor after 1,600 is within 0.015 of it, less than the 0.02 margin that
    replacements keep above the threshold.
    """

    Z = 2.0               # "close": within this many standard errors of the line

    def __init__(self, model, task, n: int, seed: int, device: str = "cpu",
                 totals: tuple = (400, 1600)):
        self.first = Judge.selection(model, task, n, seed, device)
        self.sets = self.first.sets            # what replacement reads the program's values on
        self.task = task
        self._model, self._seed, self._device = model, seed, device
        self.totals = tuple(t for t in totals if t > n)
        self._more: dict[tuple[int, str], Judge] = {}
        self.confirmations = 0                 # decisions that needed fresh sequences

    @property
    def seconds(self) -> float:
        """Seconds spent judging, confirmation sets included (as Judge.seconds)."""
        return self.first.seconds + sum(j.seconds for j in self._more.values())

    def __call__(self, program, task_accuracy: bool = False) -> dict:
        """The choice set's figures (as Judge)."""
        return self.first(program, task_accuracy)

    def passes(self, program, floor: dict) -> dict | None:
        """As Judge.passes, with close passes confirmed: {bucket: pooled match} or None."""
        counts = self.first.counts(program, floor)
        if counts is None:
            return None
        for stage in range(len(self.totals)):
            close = {b: floor[b] for b in floor if _close(*counts[b], floor[b], self.Z)}
            if not close:
                break
            if stage == 0:
                self.confirmations += 1
            for b in close:
                more = self._stage(stage, b).counts(program, {b: floor[b]}, {b: counts[b]})
                if more is None:
                    return None
                counts.update(more)
        return {b: same / max(n, 1) for b, (same, n) in counts.items()}

    def measure(self, program, line: float, stages: int | None = None) -> dict:
        """{bucket: {"match", "sequences"}}: the choice set's match, each bucket within Z
        standard errors of `line` judged on the confirmation sets too (pooled; at most the
        first `stages` of them)."""
        counts = {b: (round(m * len(self.first.sets[b])), len(self.first.sets[b]))
                  for b, m in self.first(program).items()}
        for stage in range(len(self.totals) if stages is None else min(stages,
                                                                        len(self.totals))):
            close = [b for b in counts if _close(*counts[b], line, self.Z, both=True)]
            if not close:
                break
            for b in close:
                counts.update(self._stage(stage, b).counts(program, {b: -1.0}, {b: counts[b]}))
        return {b: {"match": same / max(n, 1), "sequences": n} for b, (same, n) in
                counts.items()}

    def fresh(self, n: int) -> dict:
        """n sequences per bucket with the model's decisions, from a stream of their own
        (neither the choice set's, the confirmations' nor the held-out sets'): data to fit
        to, so that what is fitted is then judged on sequences it has not seen. As `sets`."""
        rng = np.random.default_rng([self._seed, 4249])
        return Judge(self._model, self.task, {
            f"{lo}-{hi}": [self.task.sample(rng, lo, hi, offset=False) for _ in range(n)]
            for lo, hi in self.task.test_buckets}, self._device).sets

    def _stage(self, i: int, bucket: str) -> Judge:
        """Confirmation set i of `bucket`: totals[i] − (the sequences before it) fresh ones."""
        if (i, bucket) not in self._more:
            before = ([len(self.first.sets[bucket])] + list(self.totals))[i]
            buckets = [f"{lo}-{hi}" for lo, hi in self.task.test_buckets]
            lo, hi = self.task.test_buckets[buckets.index(bucket)]
            rng = np.random.default_rng([self._seed, 4243, i, buckets.index(bucket)])
            self._more[i, bucket] = Judge(self._model, self.task, {bucket: [
                self.task.sample(rng, lo, hi, offset=False)
                for _ in range(self.totals[i] - before)]}, self._device)
        return self._more[i, bucket]


def _close(same: int, n: int, line: float, z: float, both: bool = False) -> bool:
    """Whether a match of same/n is within z standard errors of `line`: at or above it, or
    on either side with `both`. The error is that of (same + 1)/(n + 2), so a perfect count is
    not taken as certain."""
    p = (same + 1) / (n + 2)
    gap = same / max(n, 1) - line
    error = z * (p * (1 - p) / max(n, 1)) ** 0.5
    return abs(gap) < error if both else 0 <= gap < error


def decide(logits: np.ndarray, mode: str) -> np.ndarray:
    """A model's logits as the judge's decisions: the decoded token per position ("lm") or
    the next-token set ("bce", the logits above 0)."""
    return rule.tokens(logits) if mode == "lm" else rule.token_sets(logits, rule.LOGIT)


def same_decisions(a: np.ndarray, b: np.ndarray, mode: str) -> np.ndarray:
    """Per position: decisions `a` and `b` (as `decide` makes them) agree."""
    return rule.same_tokens(a, b) if mode == "lm" else rule.same_sets(a, b)


def _decide_output(values: np.ndarray, mode: str) -> np.ndarray:
    """A program's softmax or sigmoid prediction as decisions (p > 1/2 ⟺ logit > 0)."""
    if mode == "lm":
        return rule.tokens(values)
    return rule.token_sets(values, rule.PROBABILITY)


def _gold(e: Example, mode: str) -> np.ndarray:
    if mode == "lm":
        return np.where(e.targets == IGNORE, -1, e.targets)
    return rule.token_sets(e.targets, rule.PROBABILITY)
