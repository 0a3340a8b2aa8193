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

import numpy as np
import torch

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
        self.task = task
        self.sets = {}
        vocab = task.vocab
        if device != "cpu":
            model = copy.deepcopy(model).to(device)
        for name, examples in sets.items():
            rows = []
            for chunk in length_sorted_chunks(examples, MAX_TOKENS):
                batch = collate(chunk, vocab.pad, task.mode)
                with torch.no_grad():
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
        interpreter = Interpreter(program)
        count = {name: len(rows) for name, rows in self.sets.items()}
        size = {name: max(c, 1) for name, c in count.items()}
        wrong = dict.fromkeys(self.chunks, 0)
        rounds = max((len(c) for c in self.chunks.values()), default=0)
        for i in range(rounds):
            for name, chunks in self.chunks.items():
                if i >= len(chunks):
                    continue
                same, _ = self._chunk(program, interpreter, name, chunks[i], False)
                wrong[name] += len(chunks[i][0]) - same
                # out of reach even if every sequence not yet judged agreed
                if (count[name] - wrong[name]) / size[name] < floor[name]:
                    return None
        return {name: (count[name] - wrong[name]) / size[name] for name in self.chunks}

    def _chunk(self, program, interpreter, name, chunk, task_accuracy) -> tuple[int, int]:
        """(sequences matched, sequences right) among one chunk of a bucket."""
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
        return same, right


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
