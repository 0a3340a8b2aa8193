"""What planning (compiler/plan.py) hands to lowering (compiler/lower.py), on one screen.

The planner reads a program and answers with a `Plan`; lowering turns the Plan into weights and
reads a program node only to group heads and name things. Everything that crosses is here:

    Plan
      vars        [Var]    residual subspaces: `kind` "cat" (one-hot over `values`), "num" (one
                           scalar) or "vec" (a vector over the basis `values`); `time` written;
                           `bos` held at the BOS position. One with `affine` is virtual: an
                           affine read of other Vars, never stored in the residual.
      heads       [Head]   one attention head each, writing `out` at `time`: `mode` "mean",
                           "count" or "width" (hard attention: a conjunction of `atoms`, 0/1
                           tables over one query Var and one key Var) or "softmax" (`scores`:
                           bilinear terms (query Var, key Var, matrix)); `value` is the Linear
                           read it averages.
      blocks      [Block]  one MLP each: an element-wise function (functions.Fn) of Vars into
                           `out`, built by lowering as a lookup or discretising MLP.
      dense       [Dense]  an `mlp` node with its own weights, reading one Linear.
      output      Linear   what the unembedding reads, decoded as `output_kind` ("cat", "num",
                           "vec" or "logits") over `output_values`.
      layers, activation   the depth, and the model's one activation ("relu" or "gelu_new").

    Linear    rows {Var: (var.width, width) array} + const (width,), the constant read from
              the residual's `one` direction.

Time 0 is the embedding, 2l+1 the attention of layer l, 2l+2 its MLP; whatever runs at time t
reads only Vars written before t. `CompileError` is how planning says that a construct has no
exact compiled form (compiler/validate.py reports what it can before planning starts).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs
import numpy as np

from rasp_ir import nodes as ir

if TYPE_CHECKING:
    from .functions import Fn


class CompileError(Exception):
    """A construct that cannot be compiled exactly: its node (or None) and the reason."""

    def __init__(self, node, reason: str):
        super().__init__(reason)
        self.node, self.reason = node, reason


@attrs.define(eq=False)
class Var:
    """A named subspace of the residual stream."""
    name: str
    kind: str                 # "cat" (one-hot over `values`), "num" (one scalar), "vec"
    values: tuple | None      # cat/vec: the basis; num: the finite value set, if known
    time: int
    bos: object = None        # what it holds at the BOS position (None: the zero vector)
    # a *virtual* number: an affine read of other variables, never stored in the residual
    affine: Linear | None = None

    @property
    def width(self) -> int:
        return 1 if self.kind == "num" else len(self.values)

    def encode(self, value) -> np.ndarray:
        """The residual vector of one value of this variable."""
        if self.kind == "num":
            return np.array([float(value)])
        out = np.zeros(self.width)
        out[index_of(self.values, value)] = 1.0
        return out


def index_of(values, value) -> int:
    """The position of `value` in `values`, preferring one of the same type (1 before True)."""
    for i, v in enumerate(values):
        if v == value and type(v) is type(value):
            return i
    for i, v in enumerate(values):
        if v == value:
            return i
    raise KeyError(value)


@attrs.define(eq=False)
class Linear:
    """A linear read of the residual stream: rows per (variable, index) and a constant."""
    rows: dict            # Var -> array (var.width, out)
    const: np.ndarray     # (out,), multiplied by the `one` direction
    width: int


@attrs.define(eq=False)
class Atom:
    """One `select` inside a head's selector: a 0/1 table over query × key variable values."""
    query: Var | None      # None: a constant query (read from `one`)
    key: Var | None
    table: np.ndarray      # (query values or 1, key values or 1)


@attrs.define(eq=False)
class Head:
    """An attention head: a hard mean (`mode` "mean", or "count" for a mean of 0/1 values of
    known selector width), a selector width ("width") or a softmax ("softmax")."""
    node: ir.Node
    mode: str
    atoms: list                # hard modes: a conjunction of atoms
    scores: list               # softmax mode: (query Var|None, key Var|None, matrix) terms
    value: Linear | None
    out: Var
    time: int
    # "count" heads: the BOS sink's weight relative to one selected key, per value of `var`,
    # so that every row sums to the same denominator: (var, weights)
    sink: tuple | None = None


@attrs.define(eq=False)
class Block:
    """An MLP computing one element-wise function into `out` (a lookup or discretising MLP)."""
    fn: Fn
    out: Var
    time: int
    node: ir.Node


@attrs.define(eq=False)
class Dense:
    """An `mlp` node placed as it stands: its inputs read as one concatenated vector, its own
    weights (W_in, b_in, W_out, b_out), its activation; the output is a vector variable."""
    node: ir.Mlp
    read: Linear               # the inputs' vectors side by side, in the node's order
    W_in: np.ndarray           # (d_in, units)
    b_in: np.ndarray           # (units,)
    W_out: np.ndarray          # (units, d_out)
    b_out: np.ndarray          # (d_out,)
    out: Var
    time: int


@attrs.define(eq=False)
class Plan:
    """Every residual variable and every block that writes one, for one program's output."""
    vars: list
    heads: list
    blocks: list
    output: Linear
    output_var: Var | None          # the decoded kind: cat/num/vec/logits basis
    output_kind: str
    output_values: tuple | None
    layers: int
    dense: list = attrs.Factory(list)    # `mlp` nodes placed as they are
    activation: str = "relu"             # the model's one activation (see Planner.activation)
