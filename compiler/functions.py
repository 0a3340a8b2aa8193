"""Element-wise IR expressions as Python functions of the residual variables they read.

The compiler turns every element-wise expression into a finite table (its value for every
combination of its inputs' value sets); this module finds the inputs ("leaves") of an
expression and evaluates it on atoms, with exactly the interpreter's semantics (rasp_ir.ops),
and on every combination at once (a Grid; numpy where it agrees, see compiler/vectorised.py),
which gives the same table as calling it once per combination.
"""

from __future__ import annotations

import itertools
import weakref
from typing import Callable

import attrs
import numpy as np

from rasp_ir import nodes as ir
from rasp_ir import ops

from . import vectorised as V


class Undefined(Exception):
    """The expression raises on these inputs (a runtime error the program never reaches)."""


@attrs.frozen(eq=False)
class Fn:
    """An element-wise function: `leaves` are the residual variables it reads (in order).
    `affine` is ({leaf: coefficient}, constant) when the expression is affine by construction
    (sums, differences, constant multiples of numbers), which no sampling could prove.
    `vector` computes it on a whole Grid at once (None: tabulated call by call)."""
    leaves: tuple
    call: Callable  # (dict leaf -> atom) -> atom
    affine: tuple | None = None
    minimal: bool = False   # already pruned: it depends on every leaf it lists
    vector: Callable | None = None  # Grid -> column (compiler/vectorised.py)

    def pruned(self, limit: int = 1 << 13) -> "Fn":
        """The same function without the leaves it does not depend on (e.g. a mean times the
        width of its selector, read from the query's index, does not depend on the index),
        answering from its table: parents evaluate it in O(1)."""
        if self.minimal:
            return self
        sizes = [len(getattr(leaf, "values", None) or ()) for leaf in self.leaves]
        # two inputs is where a dependency cancels in practice ((i + 1) * count / (i + 1));
        # wider tables cost more to tabulate than they save
        if len(self.leaves) < 2 or 0 in sizes or _prod(sizes) > limit >> (
                2 * max(0, len(self.leaves) - 2)):
            return self
        values, undefined = self.column()
        defined = np.ones(values.shape, dtype=bool) if undefined is None else ~undefined
        keep = [i for i in range(len(self.leaves)) if not _independent(values, defined, i)]
        return _tabulated(self, keep, values, defined)

    def column(self) -> tuple:
        """(values, undefined): the function on every combination of its leaves' values, leaf
        i along axis i (compiler/vectorised.py); `undefined` (None: nowhere) marks where it
        raises Undefined."""
        grid = Grid(self.leaves)
        values, undefined = grid.column(self)
        return (np.broadcast_to(values, grid.shape),
                None if undefined is None else np.broadcast_to(undefined, grid.shape))

    def table(self) -> dict:
        """{tuple of leaf values: result} over every combination; Undefined results omitted."""
        values, undefined = self.column()
        pairs = zip(itertools.product(*(leaf.values for leaf in self.leaves)),
                    values.ravel().tolist())
        if undefined is None:
            return dict(pairs)
        return dict(itertools.compress(pairs, (~undefined).ravel().tolist()))


class Grid:
    """Every combination of the values of `leaves`, leaf i varying along axis i (the order of
    itertools.product), and the columns of functions on it, each computed once. `given` binds
    other leaves (a predicate's parameters) to columns of their own."""

    def __init__(self, leaves: tuple, given: dict | None = None):
        self.leaves = leaves
        self.axes = {leaf: i for i, leaf in enumerate(leaves)}
        self.shape = tuple(len(leaf.values) for leaf in leaves)
        self.given = given or {}
        self._columns: dict = {}

    def column(self, fn: Fn) -> tuple:
        """`fn` on the grid: (values, undefined), broadcastable to `shape`."""
        if fn not in self._columns:
            self._columns[fn] = fn.vector(self) if fn.vector is not None else \
                self.place(fn.leaves, _called_column(fn))
        return self._columns[fn]

    def leaf(self, leaf) -> tuple:
        if leaf in self.given:
            return self.given[leaf]
        shape = [1] * len(self.shape)
        shape[self.axes[leaf]] = self.shape[self.axes[leaf]]
        return V.atoms(leaf.values).reshape(shape), None

    def place(self, leaves: tuple, column: tuple) -> tuple:
        """A column over `leaves` (leaf i along axis i, full size) laid along this grid."""
        axes = [self.axes[leaf] for leaf in leaves]
        order = sorted(range(len(axes)), key=axes.__getitem__)
        shape = [1] * len(self.shape)
        for axis in axes:
            shape[axis] = self.shape[axis]

        def lay(array):
            return None if array is None else array.transpose(order).reshape(shape)
        return lay(column[0]), lay(column[1])


# columns of functions without a vectorised form (a plan's reads of head outputs), computed
# call by call once while the function lives: every table that reads the head reuses them
_CALLED: "weakref.WeakKeyDictionary[Fn, tuple]" = weakref.WeakKeyDictionary()


def _called_column(fn: Fn) -> tuple:
    if fn not in _CALLED:
        _CALLED[fn] = column_by_calls(fn)
    return _CALLED[fn]


def column_by_calls(fn: Fn) -> tuple:
    """`fn` on every combination of its leaves' values, one call per combination: the
    reference the vectorised path equals. (values, undefined) of shape (len(values), ...)."""
    results, failed = [], []
    env: dict = {}      # one dict, refilled: calls read their inputs and keep nothing
    leaves, call = fn.leaves, fn.call
    for combo in itertools.product(*(leaf.values for leaf in leaves)):
        env.update(zip(leaves, combo))
        try:
            results.append(call(env))
            failed.append(False)
        except Undefined:
            results.append(None)
            failed.append(True)
    return V.from_results(results, failed, tuple(len(leaf.values) for leaf in leaves))


def _independent(values: np.ndarray, defined: np.ndarray, axis: int) -> bool:
    """Whether every defined value equals (V.same) the first defined one along `axis`."""
    first = np.expand_dims(np.argmax(defined, axis=axis), axis)
    reference = np.take_along_axis(values, first, axis)
    return bool((V.same(values, reference) | ~defined).all())


def _tabulated(fn: Fn, keep: list, values: np.ndarray, defined: np.ndarray) -> Fn:
    """`fn` as a lookup over the leaves at positions `keep`; a dropped leaf takes the first
    value where `fn` is defined."""
    leaves = tuple(fn.leaves[i] for i in keep)
    shape = tuple(values.shape[i] for i in keep)
    order = keep + [i for i in range(values.ndim) if i not in keep]
    rows = _prod(shape)
    flat_values = values.transpose(order).reshape(rows, -1)
    flat_defined = defined.transpose(order).reshape(rows, -1)
    first = flat_defined.argmax(axis=1)
    kept_values = flat_values[np.arange(rows), first].reshape(shape)
    kept_defined = flat_defined[np.arange(rows), first].reshape(shape)
    dropped = {leaf: leaf.values[0] for i, leaf in enumerate(fn.leaves) if i not in keep}
    call = fn.call
    column = (kept_values, None if kept_defined.all() else ~kept_defined)
    lookup = None       # built on the first call: most parents read the column instead

    def tabulated(env):
        nonlocal lookup
        if lookup is None:
            combos = itertools.product(*(leaf.values for leaf in leaves))
            lookup = dict(itertools.compress(zip(combos, kept_values.ravel().tolist()),
                                             kept_defined.ravel().tolist()))
        try:
            return lookup[tuple(env[leaf] for leaf in leaves)]
        except (KeyError, TypeError):     # outside the value sets, or undefined there
            return call({**dropped, **env})
    return Fn(leaves, tabulated, minimal=True, vector=lambda grid: grid.place(leaves, column))


def _prod(sizes):
    out = 1
    for s in sizes:
        out *= s
    return out


def _guard(fn):
    try:
        return fn()
    except (ArithmeticError, TypeError, ValueError, KeyError, OverflowError) as exc:
        raise Undefined(str(exc)) from None


def build(node: ir.Node, leaf_of: Callable[[ir.Node], object | None],
          bindings: dict[str, ir.Binding], memo: dict | None = None) -> Fn:
    """The function computed by `node`. `leaf_of(n)` names the residual variable holding `n`
    (or None when `n` must be expanded); element-wise bindings are inlined through Refs.
    `memo` keeps the functions of sub-expressions already built (valid while `leaf_of`
    answers the same): a shared sub-expression is then built, and tabulated, once."""
    if memo is None:
        memo = {}
    if node not in memo:
        memo[node] = _build(node, leaf_of, bindings, memo)
    return memo[node]


def _build(node, leaf_of, bindings, memo) -> Fn:
    leaf = leaf_of(node)
    if isinstance(leaf, Fn):
        return leaf
    if leaf is not None:
        return variable(leaf)
    if isinstance(node, ir.Ref):
        return build(bindings[node.name].value, leaf_of, bindings, memo)
    if isinstance(node, ir.Const):
        value = node.value
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        return Fn((), lambda env: value, ({}, float(value)) if number else None,
                  vector=lambda grid: V.constant(value))
    if isinstance(node, ir.Param):
        param = ("param", node.name)
        return Fn((param,), lambda env: env[param], vector=lambda grid: grid.leaf(param))
    if isinstance(node, ir.Primitive) and node.name == "erase":
        # the constant 1, whatever it reads: its argument is never built (nor computed)
        return Fn((), lambda env: 1, ({}, 1.0), vector=lambda grid: V.constant(1))
    parts = [build(c, leaf_of, bindings, memo) for c in node.children()]
    leaves = tuple(dict.fromkeys(leaf for p in parts for leaf in p.leaves))
    fn = attrs.evolve(_combine(node, leaves, parts), affine=_affine_of(node, parts))
    # a dependency can only cancel where two parts read the same input, as i does in
    # (i + 1) * (count / (i + 1)); pruning there, early, keeps every later table small
    shared = len(leaves) < sum(len(p.leaves) for p in parts)
    return fn.pruned() if shared and len(leaves) > 1 else fn


def variable(leaf) -> Fn:
    """The function that reads one residual variable as it is."""
    return Fn((leaf,), lambda env: env[leaf], ({leaf: 1.0}, 0.0),
              vector=lambda grid: grid.leaf(leaf))


def _combine(node, leaves, parts) -> Fn:
    calls = [p.call for p in parts]
    if isinstance(node, ir.UnaryOp):
        op = node.op
        return Fn(leaves, lambda env: _guard(lambda: ops.unary(op, calls[0](env))),
                  vector=lambda grid: V.unary(op, grid.column(parts[0])))
    if isinstance(node, ir.BinaryOp):
        op = node.op
        return Fn(leaves, lambda env: _guard(
            lambda: ops.binary(op, calls[0](env), calls[1](env))),
            vector=lambda grid: V.binary(op, grid.column(parts[0]), grid.column(parts[1])))
    if isinstance(node, ir.Cond):
        return Fn(leaves, lambda env: calls[1](env) if calls[0](env) else calls[2](env),
                  vector=lambda grid: V.cond(*(grid.column(p) for p in parts)))
    if isinstance(node, ir.In):
        options, negate = node.options, node.negate
        return Fn(leaves, lambda env: V.is_member(calls[0](env), options) != negate,
                  vector=lambda grid: V.member(grid.column(parts[0]), options, negate))
    if isinstance(node, ir.Lookup):
        table = dict(zip(node.keys, node.values))
        return Fn(leaves, lambda env: _guard(lambda: table[calls[0](env)]),
                  vector=lambda grid: V.lookup(grid.column(parts[0]), table))
    if isinstance(node, ir.Call):
        function = node.function
        return Fn(leaves, lambda env: _guard(lambda: ops.call(function, calls[0](env))),
                  vector=lambda grid: V.call(function, grid.column(parts[0])))
    if isinstance(node, ir.Primitive):
        value = primitive(node)
        return Fn(leaves, lambda env: _guard(lambda: value(*(c(env) for c in calls))))
    raise NotImplementedError(type(node).__name__)


def primitive(node: ir.Primitive) -> Callable:
    """A primitive on categorical values, as the interpreter computes it on their one-hot rows
    (an entry is 1 at the value, 0 elsewhere); the validator lets only these through."""
    name, params = node.name, node.params

    def entry(x, v):
        return 1.0 if x == v else 0.0
    if name == "harden":
        return lambda x: x
    if name == "exists":
        value, threshold = params
        return lambda x: entry(x, value) > threshold
    if name == "is_pure":
        (threshold,) = params
        return lambda x: x if 1.0 > threshold else None
    if name == "balance":
        first, second, tolerance = params
        return lambda x: (0 if abs(entry(x, first) - entry(x, second)) <= tolerance
                          else int(np.sign(entry(x, first) - entry(x, second))))
    if name == "diff":
        first, second, bins = params
        return lambda x: int(min(max(np.floor(bins * (entry(x, first) - entry(x, second))
                                              + 0.5), -bins), bins))
    if name == "product":
        from rasp_ir.primitives import product_label
        return product_label
    raise NotImplementedError(f"primitive {name} on categorical values")


def _affine_of(node, parts) -> tuple | None:
    """Affine structure through +, -, constant * and /, unary -, numerical()."""
    forms = [p.affine for p in parts]
    if any(f is None for f in forms):
        return None
    if isinstance(node, ir.Call) and node.function == "numerical":
        return forms[0]
    if isinstance(node, ir.UnaryOp) and node.op in "-+":
        coefficients, c = forms[0]
        sign = -1.0 if node.op == "-" else 1.0
        return {k: sign * a for k, a in coefficients.items()}, sign * c
    if not isinstance(node, ir.BinaryOp) or node.op not in ("+", "-", "*", "/"):
        return None
    (a, ca), (b, cb) = forms
    if node.op in "+-":
        sign = 1.0 if node.op == "+" else -1.0
        merged = dict(a)
        for k, v in b.items():
            merged[k] = merged.get(k, 0.0) + sign * v
        return merged, ca + sign * cb
    if node.op == "*" and not a:
        return {k: ca * v for k, v in b.items()}, ca * cb
    if node.op == "*" and not b:
        return {k: cb * v for k, v in a.items()}, ca * cb
    if node.op == "/" and not b and cb != 0:
        return {k: v / cb for k, v in a.items()}, ca / cb
    return None


def predicate(pred: ir.Node) -> Callable:
    """A select/project predicate as `f(key, query)` (or `f(value)` with one parameter)."""
    if isinstance(pred, ir.Compare):
        op = pred.op
        return lambda k, q: ops.compare(op, k, q)
    names = pred.params
    body = build(pred.body, lambda n: None, {})

    def call(*args):
        try:
            return bool(body.call({("param", n): a for n, a in zip(names, args)}))
        except Undefined:
            return False
    return call


def numeric(pred: ir.Lambda) -> Callable:
    """A numeric op (`op=(0.5 * k)`, rasp_ir.types.numeric_op) as `f(key, query)` giving a
    float; where the op is undefined the score is 0, as a predicate's false."""
    names = pred.params
    body = build(pred.body, lambda n: None, {})

    def call(*args):
        try:
            return float(body.call({("param", n): a for n, a in zip(names, args)}))
        except Undefined:
            return 0.0
    return call


def predicate_table(pred: ir.Node, keys: tuple, queries: tuple | None) -> np.ndarray:
    """A select predicate on every key and query at once: 0/1 of shape (queries, keys), or
    (1, keys) for a predicate of the key alone (`queries` None). `keys` and `queries` are 1-d
    columns (compiler/vectorised.py); where a side or the predicate is undefined, or a
    comparison raises, the answer is 0, as `predicate`'s callers take it."""
    k_values, k_undefined = keys
    key = (k_values[None, :], None if k_undefined is None else k_undefined[None, :])
    query = None if queries is None else (
        queries[0][:, None], None if queries[1] is None else queries[1][:, None])
    if isinstance(pred, ir.Compare):
        if query is None:           # a comparison needs a query: never true
            return np.zeros((1, len(k_values)))
        values, undefined = V.binary(pred.op, key, query)
    else:
        body = build(pred.body, lambda n: None, {})
        given = {("param", name): side for name, side in zip(pred.params, (key, query))
                 if side is not None}
        values, undefined = Grid((), given).column(body)
    rows = 1 if query is None else len(query[0])
    answer = V.truthy(np.asarray(values))
    # a side undefined there makes the pair 0 even where the predicate does not read it
    for mask in (undefined, key[1], query[1] if query is not None else None):
        if mask is not None:
            answer = answer & ~mask
    return np.broadcast_to(answer, (rows, len(k_values))).astype(np.float64)


def is_elementwise(node: ir.Node) -> bool:
    return isinstance(node, (ir.Const, ir.UnaryOp, ir.BinaryOp, ir.Cond, ir.In, ir.Lookup,
                             ir.Call, ir.Primitive))
