"""Which values live in the residual stream, which block computes each, and in which layer.

A value is *materialised* (given a subspace of the residual stream) only where a block must
read it: attention outputs, and element-wise expressions that no linear map can compute
(functions of two or more inputs, or non-affine functions of a number). Every other
element-wise expression is folded into the linear maps of the blocks that read it (W_Q, W_K,
W_V, W_in, W_U), so maps cost no layer. Blocks are placed as early as their inputs allow:
time 0 is the embedding, time 2l+1 the attention of layer l, time 2l+2 its MLP.
"""

from __future__ import annotations

import math
import random

import attrs
import numpy as np

from rasp_ir import nodes as ir
from rasp_ir import types as T

from . import functions as F

MAX_MLP_UNITS = 1 << 17     # one block's hidden units; larger tables are reported, not built


class CompileError(Exception):
    """A construct that cannot be compiled exactly (the validator reports these first)."""

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

    @property
    def width(self) -> int:
        return 1 if self.kind == "num" else len(self.values)

    def encode(self, value) -> np.ndarray:
        """The residual vector of one value of this variable."""
        if self.kind == "num":
            return np.array([float(value)])
        out = np.zeros(self.width)
        out[_index(self.values, value)] = 1.0
        return out


def _index(values, value) -> int:
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
    """An attention head: hard mean (`mode` "mean"), selector width ("width") or softmax."""
    node: ir.Node
    mode: str
    atoms: list                # hard modes: a conjunction of atoms
    scores: list               # softmax mode: (query Var|None, key Var|None, matrix) terms
    value: Linear | None
    out: Var
    time: int


@attrs.define(eq=False)
class Block:
    """An MLP computing one element-wise function into `out` (a lookup or discretising MLP)."""
    fn: F.Fn
    out: Var
    time: int
    node: ir.Node


@attrs.define(eq=False)
class Plan:
    vars: list
    heads: list
    blocks: list
    output: Linear
    output_var: Var | None          # the decoded kind: cat/num/vec/logits basis
    output_kind: str
    output_values: tuple | None
    layers: int


def _next(time: int, parity: int) -> int:
    """The first time after `time` with the given parity (1: attention, 0: MLP)."""
    t = time + 1
    return t if t % 2 == parity else t + 1


class Planner:
    """Builds a Plan for one program (see `plan`)."""

    def __init__(self, program: ir.Program, maxlen: int):
        self.program, self.maxlen = program, maxlen
        self.bindings = {b.name: b for b in program.bindings}
        self.ctx = T.Context.of(program)
        self.ctx.maxlen = maxlen
        self.ctx.bindings, problems = _infer(program, self.ctx)
        if problems:
            raise CompileError(problems[0].node, problems[0].message)
        self.vars: list[Var] = []
        self.heads: list[Head] = []
        self.blocks: list[Block] = []
        self.held: dict[int, Var] = {}            # id(node) -> the variable holding it
        self.names: set[str] = set()

    # ------------------------------------------------------------ variables

    def type_of(self, node):
        return T.type_of(node, self.ctx)

    def new_var(self, name, kind, values, time, bos=None) -> Var:
        base, i = name, 2
        while name in self.names:
            name, i = f"{base}_{i}", i + 1
        self.names.add(name)
        var = Var(name, kind, values, time, bos)
        self.vars.append(var)
        return var

    def source(self, node) -> Var:
        key = ("tokens", node.view) if isinstance(node, ir.Tokens) else ("indices",)
        if key not in self.held:
            t = self.type_of(node)
            name = "indices" if key == ("indices",) else (
                "tokens" if node.view == "asis" else f"tokens_{node.view}")
            kind = "num" if isinstance(t, T.Num) else "cat"
            self.held[key] = self.new_var(name, kind, t.values, 0)
        return self.held[key]

    def leaf_of(self, node):
        """The variable that holds `node`, creating attention heads on the way; None when
        `node` is an element-wise expression to expand."""
        if isinstance(node, (ir.Tokens, ir.Indices)):
            return self.source(node)
        if id(node) in self.held:
            return self.held[id(node)]
        if isinstance(node, ir.Ref):
            value = self.bindings[node.name].value
            if F.is_elementwise(value):
                return None
            var = self.leaf_of(value)
            return var
        if isinstance(node, ir.Aggregate):
            return self.aggregate(node)
        if isinstance(node, ir.SelectorWidth):
            return self.selector_width(node)
        if F.is_elementwise(node):
            return None
        raise CompileError(node, f"{type(node).__name__} has no compiled form here")

    def fn(self, node) -> F.Fn:
        return F.build(node, self._leaf, self.bindings)

    def _leaf(self, node):
        var = self.leaf_of(node)
        if var is None:
            return None
        if isinstance(node, ir.SelectorWidth) or (
                isinstance(node, ir.Ref) and isinstance(self._target(node), ir.SelectorWidth)):
            return _WidthLeaf(var)
        return var

    def _target(self, node):
        while isinstance(node, ir.Ref):
            node = self.bindings[node.name].value
        return node

    def values_of(self, leaf) -> tuple:
        values = leaf.values
        if values is None:
            raise CompileError(None, f"the value set of `{leaf.name}` is not finite")
        return values

    # ------------------------------------------------------------ linear reads

    def linear(self, node, encoding: str, basis: tuple | None = None) -> Linear:
        """A linear read computing `node` as `encoding` ("cat" over `basis`, "num", or "vec"),
        materialising it first when no linear map can compute it."""
        fn = self.fn(node)
        form = self._linear_form(fn, encoding, basis)
        if form is not None:
            return form
        var = self.materialise(node, encoding if encoding != "vec" else "cat", basis)
        return self._linear_form(F.Fn((var,), lambda env: env[var]), encoding, basis)

    def _linear_form(self, fn: F.Fn, encoding, basis) -> Linear | None:
        leaves = fn.leaves
        width = 1 if encoding == "num" else len(basis)
        enc = (lambda v: np.array([float(v)])) if encoding == "num" else \
            (lambda v: _onehot(basis, v))
        real = [leaf for leaf in leaves if not isinstance(leaf, _WidthLeaf)]
        if not leaves:
            return Linear({}, enc(fn.call({})), width)
        if len(leaves) == 1 and isinstance(leaves[0], Var) and leaves[0].kind in ("cat",):
            var = leaves[0]
            rows = np.zeros((var.width, width))
            for i, value in enumerate(var.values):
                try:
                    rows[i] = enc(fn.call({var: value}))
                except (F.Undefined, KeyError):
                    pass   # never reached at run time
            return Linear({var: rows}, np.zeros(width), width)
        if len(leaves) == 1 and isinstance(leaves[0], Var) and leaves[0].kind == "vec" \
                and encoding == "vec":
            return Linear({leaves[0]: np.eye(width)}, np.zeros(width), width)
        if encoding == "num" and len(real) == len(leaves) and all(v.kind == "num" for v in leaves):
            return self._affine(fn, leaves)
        return None

    def _affine(self, fn: F.Fn, leaves) -> Linear | None:
        """Coefficients of `fn` if it is affine in its numerical leaves (checked on samples)."""
        try:
            zero = {v: 0 for v in leaves}
            c = float(fn.call(zero))
            coefficients = [float(fn.call({**zero, v: 1})) - c for v in leaves]
            rng = random.Random(0)
            for _ in range(24):
                point = {v: rng.choice(v.values) if v.values and rng.random() < 0.5
                         else rng.uniform(-3, 3) for v in leaves}
                expected = c + sum(a * point[v] for a, v in zip(coefficients, leaves))
                if not math.isclose(float(fn.call(point)), expected, rel_tol=1e-9, abs_tol=1e-9):
                    return None
        except (F.Undefined, TypeError, ValueError):
            return None
        return Linear({v: np.array([[a]]) for v, a in zip(leaves, coefficients)},
                      np.array([c]), 1)

    # ------------------------------------------------------------ MLP blocks

    def materialise(self, node, encoding: str, basis: tuple | None = None) -> Var:
        """Give an element-wise expression its own subspace, computed by an MLP."""
        if id(node) in self.held:
            return self.held[id(node)]
        fn = self._fitting_fn(node)
        t = self.type_of(node)
        if encoding == "cat" or basis is not None:
            values = basis if basis is not None else _finite(t, node)
            out_kind = "cat"
        else:
            values = t.values if T.is_sop(t) else None
            out_kind = "num"
        time = _next(max((leaf_var(leaf).time for leaf in fn.leaves), default=0), 0)
        name = node.name if isinstance(node, ir.Ref) else "map"
        var = self.new_var(name, out_kind, values, time)
        self.blocks.append(Block(fn, var, time, node))
        self.held[id(node)] = var
        return var

    def _fitting_fn(self, node) -> F.Fn:
        """The function of `node`, with sub-expressions materialised until at most one of its
        inputs is a number (a lookup MLP handles any number of categorical inputs and one
        number, by discretising it)."""
        fn = self.fn(node)
        if self._fits(fn):
            return fn
        for child in self._elementwise_children(node):
            sub = self.fn(child)
            if any(_is_numeric(leaf) for leaf in sub.leaves):
                t = self.type_of(child)
                self.materialise(child, "cat" if T.basis_of(t) is not None else "num")
        fn = self.fn(node)
        if not self._fits(fn):
            raise CompileError(node, "this element-wise expression combines several numbers "
                               "non-linearly; only one numerical input per map can be "
                               "compiled exactly")
        return fn

    def _elementwise_children(self, node):
        node = self._target(node) if isinstance(node, ir.Ref) and F.is_elementwise(
            self._target(node)) else node
        return [c for c in node.children()
                if F.is_elementwise(c) or isinstance(c, (ir.Ref, ir.SelectorWidth, ir.Aggregate))]

    def _fits(self, fn: F.Fn) -> bool:
        numeric = [leaf for leaf in fn.leaves if _is_numeric(leaf)]
        if len(numeric) > 1:
            return False
        units = 1
        for leaf in fn.leaves:
            values = leaf_var(leaf).values
            if values is None:
                return False
            units *= len(values) if not _is_numeric(leaf) else 2 * len(values) - 1
        return units <= MAX_MLP_UNITS

    # ------------------------------------------------------------ attention

    def selector_atoms(self, sel) -> list[Atom]:
        """A boolean selector as a conjunction of atoms (each a table over one query variable
        and one key variable); `or` is compiled when both sides read the same variables."""
        if isinstance(sel, ir.Ref):
            return self.selector_atoms(self.bindings[sel.name].value)
        if isinstance(sel, ir.SelectAnd):
            return self.selector_atoms(sel.left) + self.selector_atoms(sel.right)
        if isinstance(sel, ir.SelectNot):
            atoms = self.selector_atoms(sel.operand)
            if len(atoms) != 1:
                raise CompileError(sel, "`not` of a combination of selects over different "
                                   "s-ops cannot be compiled exactly")
            a = atoms[0]
            return [Atom(a.query, a.key, 1.0 - a.table)]
        if isinstance(sel, ir.SelectOr):
            left, right = self.selector_atoms(sel.left), self.selector_atoms(sel.right)
            if len(left) == len(right) == 1 and left[0].query is right[0].query \
                    and left[0].key is right[0].key:
                return [Atom(left[0].query, left[0].key, np.maximum(left[0].table,
                                                                    right[0].table))]
            raise CompileError(sel, "`or` of selects over different s-ops cannot be compiled "
                               "exactly", )
        if isinstance(sel, ir.Select):
            return [self.atom(sel)]
        raise CompileError(sel, f"{type(sel).__name__} is not a boolean selector")

    def side(self, node) -> tuple[Var | None, callable, tuple]:
        """(variable or None for a constant, value map, that variable's values) for one side
        of a select; sides that are not functions of one categorical variable are
        materialised as categorical variables first."""
        fn = self.fn(node)
        if not fn.leaves:
            return None, (lambda _v, fn=fn: fn.call({})), (None,)
        if len(fn.leaves) == 1 and isinstance(fn.leaves[0], Var) and fn.leaves[0].kind == "cat":
            var = fn.leaves[0]
            return var, (lambda v, fn=fn, var=var: fn.call({var: v})), var.values
        var = self.materialise(node, "cat")
        return var, (lambda v: v), var.values

    def atom(self, sel: ir.Select) -> Atom:
        if sel.queries is None or isinstance(sel.predicate, ir.Matrix):
            raise CompileError(sel, "a score selector inside a boolean combination")
        pred = F.predicate(sel.predicate)
        kvar, kmap, kvalues = self.side(sel.keys)
        qvar, qmap, qvalues = self.side(sel.queries)
        table = np.zeros((len(qvalues), len(kvalues)))
        for i, qv in enumerate(qvalues):
            for j, kv in enumerate(kvalues):
                try:
                    table[i, j] = 1.0 if pred(kmap(kv), qmap(qv)) else 0.0
                except (F.Undefined, TypeError, ValueError, ArithmeticError):
                    table[i, j] = 0.0
        return Atom(qvar, kvar, table)

    def aggregate(self, node: ir.Aggregate) -> Var:
        sel_t = self.type_of(node.selector)
        value_t = self.type_of(node.values)
        soft = isinstance(sel_t, T.Score) or self.program.attention == "softmax"
        if soft:
            return self._soft_aggregate(node, value_t)
        atoms = self.selector_atoms(node.selector)
        out_t = self.type_of(node)
        if isinstance(value_t, T.Num):
            value = self.linear(node.values, "num")
            default = node.default if node.default is not None else 0
            out = ("num", out_t.values, default)
        elif isinstance(value_t, T.Cat):
            basis = _finite(out_t, node)
            value = self.linear(node.values, "cat", basis)
            default = node.default
            if default is None and self.program.compat == "rasp0.1":
                default = 0
            out = ("cat", basis, default)
        else:
            raise CompileError(node, "hard attention over a vector")
        return self._head(node, "mean", atoms, [], value, out)

    def _head(self, node, mode, atoms, scores, value, out) -> Var:
        kind, values, default = out
        inputs = [a.query for a in atoms] + [a.key for a in atoms] + list(value.rows if value
                                                                            else [])
        inputs += [v for term in scores for v in term[:2]]
        time = _next(max((v.time for v in inputs if v is not None), default=0), 1)
        var = self.new_var(_name_of(node, self.bindings), kind, values, time, bos=default)
        self.heads.append(Head(node, mode, atoms, scores, value, var, time))
        self.held[id(node)] = var
        return var

    def selector_width(self, node: ir.SelectorWidth) -> Var:
        atoms = self.selector_atoms(node.selector)
        values = tuple(1.0 / (w + 1) for w in range(self.maxlen + 1))
        return self._head(node, "width", atoms, [], None, ("num", values, 1.0))

    def _soft_aggregate(self, node, value_t) -> Var:
        scores = self.score_terms(node.selector, 1.0)
        out_t = self.type_of(node)
        if isinstance(value_t, T.Num):
            value, out = self.linear(node.values, "num"), ("num", None, 0.0)
        else:
            basis = out_t.basis
            encoding = "vec" if isinstance(value_t, T.Vec) else "cat"
            value = self.linear(node.values, encoding, basis)
            out = ("vec", basis, None)
        return self._head(node, "softmax", [], scores, value, out)

    def score_terms(self, sel, factor: float) -> list:
        """A score selector as a sum of bilinear terms (query var, key var, matrix)."""
        if isinstance(sel, ir.Ref):
            return self.score_terms(self.bindings[sel.name].value, factor)
        if isinstance(sel, ir.ScoreSum):
            return [t for term in sel.terms for t in self.score_terms(term, factor)]
        if isinstance(sel, ir.ScoreScale):
            return self.score_terms(sel.operand, factor * sel.factor)
        if isinstance(sel, ir.Select) and isinstance(sel.predicate, ir.Matrix):
            kvar = self._vector_side(sel.keys)
            matrix = np.asarray(sel.predicate.values, dtype=np.float64)
            if sel.queries is None:
                return [(None, kvar, factor * matrix[None, :])]
            qvar = self._vector_side(sel.queries)
            return [(qvar, kvar, factor * matrix)]
        scale = factor * self.program.hard_scale
        t = self.type_of(sel)
        if isinstance(t, T.Sel):
            atoms = self.selector_atoms(sel)
            return [(a.query, a.key, scale * a.table) for a in atoms] if len(atoms) == 1 else \
                _conjunction_error(sel)
        if isinstance(sel, ir.Select):     # a predicate over vector bases
            kvar = self._vector_side(sel.keys)
            pred = F.predicate(sel.predicate)
            if sel.queries is None:
                row = np.array([[1.0 if pred(k) else 0.0 for k in kvar.values]])
                return [(None, kvar, scale * row)]
            qvar = self._vector_side(sel.queries)
            table = np.array([[1.0 if pred(k, q) else 0.0 for k in kvar.values]
                              for q in qvar.values])
            return [(qvar, kvar, scale * table)]
        raise CompileError(sel, f"{type(sel).__name__} in a score")

    def _vector_side(self, node) -> Var:
        t = self.type_of(node)
        if isinstance(t, T.Vec):
            fn = self.fn(node)
            if len(fn.leaves) == 1 and isinstance(fn.leaves[0], Var):
                return fn.leaves[0]
            raise CompileError(node, "a vector that is not held by one variable")
        var, _, _ = self.side(node)
        if var is None:
            raise CompileError(node, "a constant side of a score selector")
        if var.values != T.basis_of(t):
            var = self.materialise(node, "cat", T.basis_of(t))
        return var

    # ------------------------------------------------------------ output

    def output(self, node) -> tuple[Linear, str, tuple | None]:
        t = self.type_of(node)
        if isinstance(t, T.Num):
            return self.linear(node, "num"), "num", None
        if isinstance(t, T.Cat):
            basis = _finite(t, node)
            return self.linear(node, "cat", basis), "cat", basis
        if isinstance(t, T.Vec) and not isinstance(node, ir.Predict):
            return self.linear(node, "vec", t.basis), "vec", t.basis
        return self.logits(node), "logits", t.basis if isinstance(t, T.Vec) else t.out

    def logits(self, node) -> Linear:
        """Logits (and softmax/sigmoid of logits, decoded by argmax) are linear reads."""
        if isinstance(node, ir.Ref):
            return self.logits(self.bindings[node.name].value)
        if isinstance(node, ir.Predict):
            return self.logits(node.logits)
        if isinstance(node, ir.LogitsSum):
            parts = [self.logits(t) for t in node.terms]
            return _sum_linear(parts)
        if isinstance(node, ir.Project):
            out = self.program.vocab
            pred = node.predicate
            if node.operand is None:
                if isinstance(pred, ir.Matrix):
                    row = np.asarray(pred.values, dtype=np.float64)
                else:
                    f = F.predicate(pred)
                    row = self.program.hard_scale * np.array([1.0 if f(o) else 0.0 for o in out])
                return Linear({}, row, len(out))
            var = self._vector_side(node.operand)
            if isinstance(pred, ir.Matrix):
                matrix = np.asarray(pred.values, dtype=np.float64)
            else:
                f = F.predicate(pred)
                matrix = self.program.hard_scale * np.array(
                    [[1.0 if f(i, o) else 0.0 for o in out] for i in var.values])
            return Linear({var: matrix}, np.zeros(len(out)), len(out))
        raise CompileError(node, f"{type(node).__name__} cannot produce logits")


class _WidthLeaf:
    """A selector width read from its head's output 1/(w+1): the leaf's value is w."""

    def __init__(self, var: Var):
        self.var = var
        self.values = tuple(round(1 / x) - 1 for x in var.values)

    def __hash__(self):
        return hash(("width", id(self.var)))

    def __eq__(self, other):
        return isinstance(other, _WidthLeaf) and other.var is self.var


def leaf_var(leaf) -> Var:
    return leaf.var if isinstance(leaf, _WidthLeaf) else leaf


def _is_numeric(leaf) -> bool:
    return isinstance(leaf, _WidthLeaf) or leaf.kind == "num"


def _onehot(basis, value) -> np.ndarray:
    out = np.zeros(len(basis))
    out[_index(basis, value)] = 1.0
    return out


def _finite(t, node) -> tuple:
    values = T.basis_of(t)
    if values is None:
        raise CompileError(node, "its value set is not finite (declare @vocab and @maxlen)")
    return values


def _name_of(node, bindings) -> str:
    for b in bindings.values():
        if b.value is node:
            return b.name
    return type(node).__name__.lower()


def _sum_linear(parts: list[Linear]) -> Linear:
    rows: dict = {}
    for p in parts:
        for var, r in p.rows.items():
            rows[var] = rows[var] + r if var in rows else r
    return Linear(rows, sum(p.const for p in parts), parts[0].width)


def _conjunction_error(sel):
    raise CompileError(sel, "a combination of selectors inside a score sum")


def _infer(program, ctx):
    ctx.bindings = {}
    problems = []
    for b in program.bindings:
        try:
            ctx.bindings[b.name] = T.type_of(b.value, ctx)
        except T.TypeIssue as issue:
            problems.append(issue)
    return ctx.bindings, problems


def plan(program: ir.Program, maxlen: int) -> Plan:
    """Materialise, schedule and size every block the program's output needs."""
    planner = Planner(program, maxlen)
    if program.output is None:
        raise CompileError(None, "the program has no @output")
    output, kind, values = planner.output(program.output)
    layers = max([(v.time + 1) // 2 for v in planner.vars] + [0])
    return Plan(planner.vars, planner.heads, planner.blocks, output, None, kind, values, layers)
