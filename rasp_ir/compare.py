"""When two outputs count as the same: per-position views of a program's (or a model's) output,
and a batched evaluator that keeps one input's runtime error from hiding the others' values.

`rasp equiv` and `rasp verify` reduce every output to a *view* and compare views position by
position:

* ``value``: categorical values, compared exactly (numbers of a categorical s-op too);
* ``number``: a numerical s-op, equal within ``tolerance`` × max(1, |a|, |b|);
* ``vector``: a real vector over a named basis, entry by entry within the same tolerance
  (bases are matched by label; a label one side lacks counts as 0);
* ``argmax``: logits or a softmax distribution, compared by the decoded token (the argmax,
  the first basis entry on ties): two programs that describe the same behaviour often differ
  in confidence (an extracted program, another @hard_scale) but not in what they predict,
  and the decoded token is what `rasp run` prints and what task metrics score;
* ``set``: a sigmoid prediction (next-token sets), compared by which entries pass 1/2 (or which
  logits are positive), the paper's metric for next-token-set tasks;
* ``column``: the first logit as a number (a compiled model's numerical output, and the
  program extracted from one: logits with the single column 0).

Categorical values, numbers and decoded tokens compare with one another (a program whose output
is `cat` can be checked against one that predicts a distribution); vectors and sets only with
their own kind. The rule itself (the tolerance, the argmax, the thresholds) lives in
rasp_ir/agreement.py, which the extraction judges and the round trip use too.
"""

from __future__ import annotations

import numpy as np
from attrs import frozen

from . import agreement as rule
from . import arrays as A
from . import nodes as ir
from . import types as T
from .agreement import TOLERANCE
from .diagnostics import Diagnostic, RaspError

SCALAR_KINDS = ("value", "number", "argmax", "column")


@frozen
class View:
    """How an output is read for comparison (see the module docstring)."""
    kind: str                       # value, number, vector, argmax, set, column
    basis: tuple | None = None      # labels of the last axis (vector, argmax, set)
    threshold: float = 0.5          # set: an entry is in the set when above this

    def describe(self) -> str:
        if self.kind == "value":
            return "categorical values, exactly"
        return rule.describe({"column": "number", "argmax": "token"}.get(self.kind, self.kind))


def program_view(program: ir.Program, output_type, node: ir.Node | None = None,
                 sets: bool = False) -> View:
    """The view of a program's output of type `output_type`. With `sets`, logits are read
    as next-token sets (positive logits) rather than by their argmax."""
    from .interpreter import prediction_function
    function = prediction_function(program, node)
    t = output_type
    if isinstance(t, T.Cat):
        return View("value")
    if isinstance(t, T.Num):
        return View("number")
    if isinstance(t, T.Logits):
        if tuple(t.out) == (0,) and not sets:
            # one logit column labelled 0: the program of a compiled numerical output
            return View("column")
        return View("set", tuple(t.out), rule.LOGIT) if sets else View("argmax", tuple(t.out))
    if isinstance(t, T.Vec):
        if function == "sigmoid":
            return View("set", tuple(t.basis), rule.PROBABILITY)
        if t.dist:
            return View("argmax", tuple(t.basis))
        return View("vector", tuple(t.basis))
    raise RaspError([Diagnostic("V603", f"an output of type {t} cannot be compared",
                                hint="make @output an s-op, logits or a prediction")])


def decode(view: View, raw: np.ndarray) -> np.ndarray:
    """A batch of raw outputs (b, n[, d]) in the form `agreement` compares."""
    if view.kind == "argmax":
        labels = _labels(view.basis)
        return labels[rule.tokens(raw)]
    if view.kind == "set":
        return rule.token_sets(raw, view.threshold)
    if view.kind == "column":
        return np.asarray(raw, dtype=np.float64)[..., 0]
    if view.kind in ("number", "vector"):
        return np.asarray(raw, dtype=np.float64)
    return np.asarray(raw)


def _labels(basis) -> np.ndarray:
    out = np.empty(len(basis), dtype=object)
    out[:] = list(basis)
    return out


def comparable(a: View, b: View) -> str | None:
    """None if views `a` and `b` can be compared, else why not."""
    if a.kind in SCALAR_KINDS and b.kind in SCALAR_KINDS:
        return None
    if a.kind == b.kind:
        return None
    return f"one output is read as {a.kind} ({a.describe()}), the other as {b.kind}"


def agreement(view_a: View, a: np.ndarray, view_b: View, b: np.ndarray,
              tolerance: float = TOLERANCE) -> np.ndarray:
    """(batch, n) bool: where decoded outputs `a` and `b` agree."""
    if view_a.kind in SCALAR_KINDS:
        return rule.same_values(a, b, tolerance)
    a, b = _aligned(view_a, a, view_b, b)
    if view_a.kind == "set":
        return rule.same_sets(a, b)
    return rule.same_vectors(a, b, tolerance)


def _aligned(view_a: View, a: np.ndarray, view_b: View, b: np.ndarray):
    """Vectors or sets over the union of both bases, in the order `a` lists them."""
    if view_a.basis is None or view_b.basis is None or view_a.basis == view_b.basis:
        if a.shape[-1] != b.shape[-1]:
            raise RaspError([Diagnostic("V603", f"outputs of width {a.shape[-1]} and "
                                        f"{b.shape[-1]} cannot be compared")])
        return a, b
    union = list(view_a.basis) + [x for x in view_b.basis if x not in set(view_a.basis)]
    return _spread(a, view_a.basis, union), _spread(b, view_b.basis, union)


def _spread(x: np.ndarray, basis, union) -> np.ndarray:
    out = np.zeros(x.shape[:-1] + (len(union),), dtype=x.dtype)
    where = {label: i for i, label in enumerate(union)}
    out[..., [where[label] for label in basis]] = x
    return out


def shown(view: View, decoded_row: np.ndarray) -> list:
    """One sequence's decoded output as plain Python values, for printing."""
    if view.kind == "set":
        basis = list(view.basis) if view.basis is not None else list(range(decoded_row.shape[-1]))
        return [[basis[i] for i in np.flatnonzero(row)] for row in decoded_row]
    if view.kind in ("vector",):
        return np.round(decoded_row.astype(np.float64), 6).tolist()
    if view.kind in ("number", "column"):
        return [round(float(v), 6) for v in decoded_row]
    return [v.item() if isinstance(v, np.generic) else v for v in decoded_row.tolist()]


class Outcome:
    """Decoded outputs of a batch of equal-length inputs, and the runtime error (a
    diagnostic) of each input that failed (None where it ran)."""

    def __init__(self, decoded: np.ndarray | None, errors: list):
        self.decoded, self.errors = decoded, errors

    @property
    def failed(self) -> np.ndarray:
        return np.array([e is not None for e in self.errors], dtype=bool)


class ProgramRunner:
    """Runs one program's output node on batches of equal-length inputs (already valid: no
    input checks here) and decodes them. A runtime error (R2xx) fails only its own input:
    the batch is split in halves until the failing inputs stand alone."""

    def __init__(self, program: ir.Program, node: ir.Node | None = None, sets: bool = False,
                 view: View | None = None, prefix: tuple = ()):
        from .interpreter import Interpreter
        self.program = program
        self.prefix = list(prefix)       # put in front of each input, its outputs dropped
        self.as_text = False             # tokens given as their text (see equiv.prefixes)
        self.node = node if node is not None else program.output
        if self.node is None:
            raise RaspError([Diagnostic("E260", "the program has no @output",
                                        hint="add a line such as `@output reverse;`")])
        self.interpreter = Interpreter(program)
        self.output_type = self.interpreter.type_of(self.node)
        self.view = view or program_view(program, self.output_type, self.node, sets)

    def raw(self, batch: list[list]) -> np.ndarray:
        if self.as_text:
            batch = [[str(t) for t in seq] for seq in batch]
        if self.prefix:
            batch = [self.prefix + list(seq) for seq in batch]
        out = np.asarray(self.interpreter.evaluate_group(batch, self.node,
                                                         list(range(len(batch)))))
        return out[:, len(self.prefix):]

    def run(self, batch: list[list]) -> Outcome:
        try:
            return Outcome(decode(self.view, self.raw(batch)), [None] * len(batch))
        except RaspError as exc:
            if not all(code.startswith("R") for code in exc.codes):
                raise
            if len(batch) == 1:
                return Outcome(None, [exc.diagnostics[0]])
        half = len(batch) // 2
        first, second = self.run(batch[:half]), self.run(batch[half:])
        return Outcome(_joined(first.decoded, second.decoded, half, len(batch) - half),
                       first.errors + second.errors)


def _joined(a: np.ndarray | None, b: np.ndarray | None, na: int, nb: int):
    """Two halves' decoded outputs as one array; an all-failed half gets filler rows."""
    if a is None and b is None:
        return None
    if a is None:
        a = np.zeros_like(b[:1]).repeat(na, axis=0)
    if b is None:
        b = np.zeros_like(a[:1]).repeat(nb, axis=0)
    if a.dtype != b.dtype and not (A.numeric(a) and A.numeric(b)):
        a, b = a.astype(object), b.astype(object)
    return np.concatenate([a, b])


def outcome_agreement(view_a: View, a: Outcome, view_b: View, b: Outcome,
                      tolerance: float = TOLERANCE, scored: np.ndarray | None = None
                      ) -> np.ndarray:
    """(batch,) bool: inputs on which the two outcomes agree at every scored position. Two
    runtime errors agree when they have the same code; an error and a value never do."""
    failed_a, failed_b = a.failed, b.failed
    same = np.zeros(len(failed_a), dtype=bool)
    ran = ~failed_a & ~failed_b
    if ran.any():
        positions = agreement(view_a, a.decoded[ran], view_b, b.decoded[ran], tolerance)
        same[ran] = rule.sequences_agree(positions, None if scored is None else scored[ran])
    for i in np.flatnonzero(failed_a & failed_b):
        same[i] = a.errors[i].code == b.errors[i].code
    return same
