"""`rasp predict`: what a model predicts at every position of an input, beside a program's.

A trained checkpoint reads `<bos>` then the input's tokens (the `<bos>` is added when the input
does not start with it) and predicts, at each position, the next token (its argmax; "lm"
tasks) or the set of tokens that may come next (the entries with a positive logit; "bce"
tasks). The positions its task scores are marked: for "lm" those from the first `<sep>` on,
for "bce" every position, except where the token is `<eos>` or `<pad>`. A model written by
`rasp compile` reads the compiler's BOS then the input and gives its decoded output at every
input position, each of them scored.

With a program, the program runs on the same tokens and its output is read as `rasp verify`
reads it; the positions where the two differ are listed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from attrs import frozen

from extractor.tasks.vocabulary import BOS, EOS, PAD, SEP
from rasp_ir import agreement as rule
from rasp_ir import nodes as ir
from rasp_ir.compare import ProgramRunner, View, agreement, comparable, shown
from rasp_ir.diagnostics import Diagnostic, RaspError


@frozen
class Prediction:
    """One input: its tokens, and per position the model's output, the program's (or None),
    whether the position is scored, and the positions where model and program differ."""
    tokens: list
    model: list
    program: list | None
    scored: list
    differs_at: list
    program_error: str | None = None

    @property
    def scored_difference(self) -> bool:
        return any(self.scored[i] for i in self.differs_at)

    def to_json(self) -> dict:
        return {"tokens": self.tokens, "model": self.model, "program": self.program,
                "scored": self.scored, "differs_at": self.differs_at,
                "program_error": self.program_error}


@frozen
class Predictions:
    kind: str                      # "trained" or "compiled"
    task: str | None
    mode: str | None               # "lm", "bce" or None (compiled)
    predictions: list

    def to_json(self) -> dict:
        return {"kind": self.kind, "task": self.task, "mode": self.mode,
                "predictions": [p.to_json() for p in self.predictions]}


def vocabulary(directory: str | Path, task_spec: str | None = None) -> tuple:
    """The tokens an input may hold (to parse command-line inputs), and the loaded side."""
    side = _side(Path(directory), task_spec)
    return side.vocab, side


def predict(side, inputs: list[list], program: ir.Program | None = None) -> Predictions:
    """Predictions of the checkpoint `side` (from `vocabulary`) on each input (a list of
    tokens), beside `program`'s when given. RaspError (R233) for an input the model cannot
    read, V60x for a program that does not fit."""
    runner = side.runner(program) if program is not None else None
    out = []
    with torch.inference_mode():
        for seq in inputs:
            seq = side.full(list(seq))
            model_view, model_decoded = side.model_output(seq)
            scored = side.scored(seq)
            program_out = error = None
            differs: list = []
            if runner is not None:
                outcome = runner.run([side.program_input(seq)])
                if outcome.errors[0] is not None:
                    e = outcome.errors[0]
                    error = f"error[{e.code}]: {e.message}"
                else:
                    decoded = side.program_decoded(outcome.decoded)
                    program_out = shown(runner.view, decoded[0])
                    same = agreement(runner.view, decoded, model_view, model_decoded)[0]
                    differs = [int(i) for i in np.flatnonzero(~same)]
            out.append(Prediction(side.shown_tokens(seq), shown(model_view, model_decoded[0]),
                                  program_out, [bool(s) for s in scored], differs, error))
    return Predictions(side.kind, side.task_name, side.mode, out)


def _side(directory: Path, task_spec: str | None):
    from compiler.checkpoint import load_model
    model, metadata = load_model(directory)
    if (metadata.get("extra") or {}).get("compiled"):
        if task_spec is not None:
            raise RaspError([Diagnostic("T406", f"{directory} is a compiled program; --task "
                                        "applies to trained checkpoints only")])
        from compiler.compile import compiled_from
        return _Compiled(compiled_from(model, metadata, directory))
    from extractor.tasks.checkpoint import task_for
    return _Trained(model.eval(), task_for(model, metadata, directory, task_spec))


def _too_long(n: int, limit: int, what: str) -> RaspError:
    return RaspError([Diagnostic("R233", f"an input of {n} tokens is longer than {what} "
                                 f"({limit})")])


class _Trained:
    kind = "trained"

    def __init__(self, model, task):
        self.model, self.task = model, task
        self.task_name, self.mode = task.name, task.mode
        self.tokens = tuple(task.vocab.tokens)
        self.vocab = self.tokens

    def full(self, seq):
        seq = seq if seq[:1] == [BOS] else [BOS, *seq]
        unknown = sorted({str(t) for t in seq if t not in set(self.tokens)})
        if unknown:
            raise RaspError([Diagnostic("R233", f"tokens {unknown} are not in task "
                                        f"{self.task_name}'s vocabulary {list(self.tokens)}")])
        if len(seq) > self.model.config.n_positions:
            raise _too_long(len(seq), self.model.config.n_positions, "the model's positions")
        return seq

    def model_output(self, seq):
        logits = self.model(torch.tensor([self.task.vocab.ids(seq)])).double().numpy()
        if self.mode == "bce":
            return View("set", self.tokens, rule.LOGIT), rule.token_sets(logits, rule.LOGIT)
        labels = np.empty(len(self.tokens), dtype=object)
        labels[:] = self.tokens
        return View("value"), labels[rule.tokens(logits)]

    def scored(self, seq):
        tokens = np.array(seq, dtype=object)
        live = ~np.isin(tokens, [EOS, PAD])
        if self.mode == "bce":
            return live
        return live & (np.cumsum(tokens == SEP) > 0)

    def runner(self, program):
        if program.vocab is None:
            raise RaspError([Diagnostic("V601", "the program has no @vocab")])
        missing = [t for t in self.tokens if t != PAD and t not in set(program.vocab)]
        if missing:
            raise RaspError([Diagnostic("V605", f"the program's @vocab lacks tokens of task "
                                        f"{self.task_name}: {missing[:10]}")])
        runner = ProgramRunner(program, sets=self.mode == "bce")
        model_view = View("set", self.tokens) if self.mode == "bce" else View("value")
        why = comparable(runner.view, model_view)
        if why is not None:
            raise RaspError([Diagnostic("V603", f"task {self.task_name} ({self.mode}) cannot "
                                        f"be compared with the program's output: {why}")])
        return runner

    def program_input(self, seq):
        return seq

    def program_decoded(self, decoded):
        return decoded

    def shown_tokens(self, seq):
        return list(seq)


class _Compiled:
    kind = "compiled"
    task_name = mode = None

    def __init__(self, compiled):
        from compiler.compile import BOS_TOKEN
        self.compiled, self.bos = compiled, BOS_TOKEN
        self.vocab = tuple(compiled.vocab[1:])
        self.extracted = False

    def full(self, seq):
        if seq[:1] == [self.bos]:
            seq = seq[1:]
        by_text = {str(t): t for t in self.vocab}
        seq = [t if t in set(self.vocab) else by_text.get(str(t), t) for t in seq]
        unknown = sorted({str(t) for t in seq if t not in set(self.vocab)})
        if unknown:
            raise RaspError([Diagnostic("R233", f"tokens {unknown} are not in the compiled "
                                        f"vocabulary {list(self.vocab)}")])
        if len(seq) > self.compiled.maxlen:
            raise _too_long(len(seq), self.compiled.maxlen, "the compiled maximum length")
        return seq

    def model_output(self, seq):
        scores = np.stack(self.compiled.logits([seq]))
        kind = self.compiled.output_kind
        if kind == "num":
            return View("number"), scores[..., 0].astype(np.float64)
        if kind == "vec":
            return View("vector"), scores.astype(np.float64)
        labels = np.empty(len(self.compiled.output_values), dtype=object)
        labels[:] = self.compiled.output_values
        return View("value"), labels[rule.tokens(scores)]

    def scored(self, seq):
        return np.ones(len(seq), dtype=bool)

    def runner(self, program):
        if program.vocab is None:
            raise RaspError([Diagnostic("V601", "the program has no @vocab")])
        # a program extracted from a compiled model reads the compiler's BOS too, and its
        # logits are the model's unembedding: read by argmax over the output values
        self.program_vocab = set(program.vocab)
        self.extracted = self.bos in self.program_vocab
        view = None
        if self.extracted:
            view = {"num": View("column"), "vec": View("vector")}.get(
                self.compiled.output_kind)
        runner = ProgramRunner(program, view=view)
        if self.extracted and view is None:
            t = runner.output_type
            basis = getattr(t, "out", None) or getattr(t, "basis", None)
            if basis is not None:
                runner.view = View("argmax", tuple(basis))
        kind = self.compiled.output_kind
        model_view = {"num": View("number"), "vec": View("vector")}.get(kind, View("value"))
        why = comparable(runner.view, model_view)
        if why is not None:
            raise RaspError([Diagnostic("V603", f"the program's output cannot be compared with "
                                        f"the compiled model's ({kind}): {why}")])
        return runner

    def program_input(self, seq):
        if self.extracted:      # an extracted program names tokens as strings
            return [self.bos] + [t if t in self.program_vocab else str(t) for t in seq]
        return seq

    def program_decoded(self, decoded):
        return decoded[:, 1:] if self.extracted else decoded

    def shown_tokens(self, seq):
        return list(seq)
