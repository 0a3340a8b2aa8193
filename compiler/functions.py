"""Element-wise IR expressions as Python functions of the residual variables they read.

The compiler turns every element-wise expression into a finite table (its value for every
combination of its inputs' value sets); this module finds the inputs ("leaves") of an
expression and evaluates it on atoms, with exactly the interpreter's semantics (rasp_ir.ops).
"""

from __future__ import annotations

import itertools
from typing import Callable

import attrs

from rasp_ir import nodes as ir
from rasp_ir import ops


class Undefined(Exception):
    """The expression raises on these inputs (a runtime error the program never reaches)."""


@attrs.frozen(eq=False)
class Fn:
    """An element-wise function: `leaves` are the residual variables it reads (in order).
    `affine` is ({leaf: coefficient}, constant) when the expression is affine by construction
    (sums, differences, constant multiples of numbers), which no sampling could prove."""
    leaves: tuple
    call: Callable  # (dict leaf -> atom) -> atom
    affine: tuple | None = None
    minimal: bool = False   # already pruned: it depends on every leaf it lists

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
        table = self.table({leaf: leaf.values for leaf in self.leaves})
        keep = []
        for i, leaf in enumerate(self.leaves):
            groups: dict = {}
            independent = True
            for combo, value in table.items():
                rest = combo[:i] + combo[i + 1:]
                if rest in groups and not _same(groups[rest], value):
                    independent = False
                    break
                groups.setdefault(rest, value)
            if not independent:
                keep.append(i)
        leaves = tuple(self.leaves[i] for i in keep)
        lookup = {}
        for combo, value in table.items():
            lookup.setdefault(tuple(combo[i] for i in keep), value)
        dropped = {leaf: leaf.values[0] for i, leaf in enumerate(self.leaves) if i not in keep}
        call = self.call

        def tabulated(env):
            try:
                return lookup[tuple(env[leaf] for leaf in leaves)]
            except (KeyError, TypeError):     # outside the value sets, or undefined there
                return call({**dropped, **env})
        return Fn(leaves, tabulated, minimal=True)

    def table(self, value_sets: dict) -> dict:
        """{tuple of leaf values: result} over every combination; Undefined results omitted."""
        out = {}
        env: dict = {}      # one dict, refilled: calls read their inputs and keep nothing
        leaves, call = self.leaves, self.call
        for combo in itertools.product(*(value_sets[leaf] for leaf in leaves)):
            env.update(zip(leaves, combo))
            try:
                out[combo] = call(env)
            except Undefined:
                pass
        return out


def _prod(sizes):
    out = 1
    for s in sizes:
        out *= s
    return out


def _same(a, b) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        try:
            return abs(a - b) <= 1e-9 * max(1.0, abs(a), abs(b))
        except TypeError:
            return False
    return a == b and type(a) is type(b)


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
        return Fn((leaf,), lambda env: env[leaf], ({leaf: 1.0}, 0.0))
    if isinstance(node, ir.Ref):
        return build(bindings[node.name].value, leaf_of, bindings, memo)
    if isinstance(node, ir.Const):
        value = node.value
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        return Fn((), lambda env: value, ({}, float(value)) if number else None)
    if isinstance(node, ir.Param):
        name = node.name
        return Fn((("param", name),), lambda env: env[("param", name)])
    parts = [build(c, leaf_of, bindings, memo) for c in node.children()]
    leaves = tuple(dict.fromkeys(leaf for p in parts for leaf in p.leaves))
    calls = [p.call for p in parts]
    fn = attrs.evolve(_combine(node, leaves, calls), affine=_affine_of(node, parts))
    # a dependency can only cancel where two parts read the same input, as i does in
    # (i + 1) * (count / (i + 1)); pruning there, early, keeps every later table small
    shared = len(leaves) < sum(len(p.leaves) for p in parts)
    return fn.pruned() if shared and len(leaves) > 1 else fn


def _combine(node, leaves, calls) -> Fn:
    if isinstance(node, ir.UnaryOp):
        op = node.op
        return Fn(leaves, lambda env: _guard(lambda: ops.unary(op, calls[0](env))))
    if isinstance(node, ir.BinaryOp):
        op = node.op
        return Fn(leaves, lambda env: _guard(
            lambda: ops.binary(op, calls[0](env), calls[1](env))))
    if isinstance(node, ir.Cond):
        return Fn(leaves, lambda env: calls[1](env) if calls[0](env) else calls[2](env))
    if isinstance(node, ir.In):
        options, negate = node.options, node.negate
        return Fn(leaves, lambda env: (calls[0](env) in options) != negate)
    if isinstance(node, ir.Lookup):
        table = dict(zip(node.keys, node.values))
        return Fn(leaves, lambda env: _guard(lambda: table[calls[0](env)]))
    if isinstance(node, ir.Call):
        function = node.function
        return Fn(leaves, lambda env: _guard(lambda: ops.call(function, calls[0](env))))
    raise NotImplementedError(type(node).__name__)


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


def is_elementwise(node: ir.Node) -> bool:
    return isinstance(node, (ir.Const, ir.UnaryOp, ir.BinaryOp, ir.Cond, ir.In, ir.Lookup,
                             ir.Call))
