"""Every node of the typed IR, declared in one place.

A program is an ordered list of named bindings; an expression refers to an earlier binding with
`Ref(name)`. Functions, loops and comprehensions of the surface language are macros and never
reach the IR. Nodes are immutable (attrs `@frozen`); passes rebuild them with `attrs.evolve`.
Source spans are fields with `eq=False`, so `parse(pretty(p)) == p` compares structure only.
Types are not stored on nodes: `rasp_ir.types.infer` computes them from the program.
The fields that hold sub-expressions are declared with `child()`; `children`, `walk` and the
passes' `rewrite` read that declaration and nothing else.
"""

from __future__ import annotations

from typing import Any

import functools

import attrs
from attrs import field

# nodes are hashed often (type memo tables, value-set caches): cache each node's hash
frozen = functools.partial(attrs.frozen, cache_hash=True)


@frozen
class Span:
    """A region of a source file: 1-based line and column, end exclusive."""

    file: str
    line: int
    column: int
    end_line: int
    end_column: int


def _span():
    return field(default=None, eq=False, repr=False, kw_only=True)


# the field metadata key that marks a child; its value says whether the field holds a tuple
_CHILD = "child"


def child(many: bool = False):
    """A field that holds a sub-expression (`many`: a tuple of them); `None` where the field's
    type allows it. Walking, rewriting and typing find a node's children through these."""
    return field(metadata={_CHILD: many})


@functools.cache
def child_fields(cls) -> tuple[tuple[str, bool], ...]:
    """(field name, holds a tuple) for each field of node class `cls` declared with `child`,
    in field order."""
    return tuple((f.name, f.metadata[_CHILD]) for f in attrs.fields(cls)
                 if _CHILD in f.metadata)


class Node:
    """Base of every IR expression node."""

    span: Span | None

    def children(self) -> tuple["Node", ...]:
        """The sub-expressions of this node, in field order."""
        out = []
        for name, many in child_fields(type(self)):
            value = getattr(self, name)
            if many:
                out.extend(value)
            elif value is not None:
                out.append(value)
        return tuple(out)


# ---------------------------------------------------------------- sources and references

@frozen
class Tokens(Node):
    """The input tokens; `view` re-reads them as str/int/float/bool (RASP 0.1's tokens_int …)."""
    view: str = "asis"
    span: Span | None = _span()


@frozen
class Indices(Node):
    """The position of each token, 0-based."""
    span: Span | None = _span()


@frozen
class Const(Node):
    """An atom (str, int, float, bool or None) broadcast to every position."""
    value: Any
    # Python says 1 == 1.0 == True; the IR must not, or `x + 1.0` would equal `x + 1`
    value_type: str = field(init=False, repr=False, default=attrs.Factory(
        lambda self: type(self.value).__name__, takes_self=True))
    span: Span | None = _span()


@frozen
class Ref(Node):
    """The value of an earlier binding of the program."""
    name: str
    span: Span | None = _span()


@frozen
class Param(Node):
    """A parameter of a predicate or lambda (`k`, `q`, `inp`, `out`, …): one atom, not an s-op."""
    name: str
    span: Span | None = _span()


# ---------------------------------------------------------------- element-wise operations

@frozen
class UnaryOp(Node):
    """Element-wise `-x`, `+x` or `not x`."""
    op: str
    operand: Node = child()
    span: Span | None = _span()


@frozen
class BinaryOp(Node):
    """Element-wise arithmetic (+ - * / % ^), comparison (== != < <= > >=) or and/or."""
    op: str
    left: Node = child()
    right: Node = child()
    span: Span | None = _span()


@frozen
class Cond(Node):
    """Element-wise `then if cond else otherwise`."""
    cond: Node = child()
    then: Node = child()
    otherwise: Node = child()
    span: Span | None = _span()


@frozen
class In(Node):
    """Element-wise membership of each value in a constant tuple (`x in [...]`, `x not in [...]`)."""
    operand: Node = child()
    options: tuple
    negate: bool = False
    span: Span | None = _span()


@frozen
class Lookup(Node):
    """Element-wise table lookup `{k: v, ...}[x]` (dicts, lists and strings indexed by an s-op).
    `name` is set when a builtin elaborated to the lookup (`token_id(x)`: @vocab numbered in
    its order); the printer then writes the call, so a 154-token table stays one word."""
    keys: tuple
    values: tuple
    operand: Node = child()
    name: str | None = None
    span: Span | None = _span()


@frozen
class Call(Node):
    """An element-wise builtin: indicator, round, numerical, categorical, abs, str, int, float."""
    function: str
    args: tuple[Node, ...] = child(many=True)
    span: Span | None = _span()


@frozen
class Lambda(Node):
    """A predicate or map written as an expression over `Param`s; only inside select/project."""
    params: tuple[str, ...]
    body: Node = child()
    span: Span | None = _span()


# ---------------------------------------------------------------- attention

@frozen
class Compare(Node):
    """A comparison predicate `key OP query` for select (RASP 0.1 order: keys first)."""
    op: str
    span: Span | None = _span()


@frozen
class Matrix(Node):
    """A table of reals: rows × cols (a vector when `cols` is None). Named ones live in the
    side-file next to the program; unnamed ones print inline."""
    rows: tuple
    cols: tuple | None
    values: tuple  # tuple of row tuples (or a flat tuple for a vector)
    name: str | None = None
    span: Span | None = _span()


@frozen
class Select(Node):
    """A selector over (query, key) pairs. `queries` is None for a query-independent selector.
    `predicate` is a Compare, a Lambda over (k, q) or a Matrix (then the result is a score)."""
    keys: Node = child()
    queries: Node | None = child()
    predicate: Node = child()
    span: Span | None = _span()


@frozen
class SelectAnd(Node):
    """Both selectors hold."""
    left: Node = child()
    right: Node = child()
    span: Span | None = _span()


@frozen
class SelectOr(Node):
    """Either selector holds."""
    left: Node = child()
    right: Node = child()
    span: Span | None = _span()


@frozen
class SelectNot(Node):
    """The selector does not hold."""
    operand: Node = child()
    span: Span | None = _span()


@frozen
class ScoreSum(Node):
    """A real-valued selector: the sum of its terms, each boolean term lifted by @hard_scale."""
    terms: tuple[Node, ...] = child(many=True)
    span: Span | None = _span()


@frozen
class ScoreScale(Node):
    """A selector or score multiplied by a constant."""
    factor: float
    operand: Node = child()
    span: Span | None = _span()


@frozen
class Aggregate(Node):
    """Attention. Over a `sel`: hard mean, `default` for empty rows (None: 0 for num, none for
    cat). Over a `score`: softmax over the permitted keys, producing a `vec` for cat/vec values."""
    selector: Node = child()
    values: Node = child()
    default: Any = None
    span: Span | None = _span()


@frozen
class SelectorWidth(Node):
    """The number of keys each query selects."""
    selector: Node = child()
    span: Span | None = _span()


# ---------------------------------------------------------------- D-RASP: vectors and logits

@frozen
class Primitive(Node):
    """An element-wise primitive on vectors: harden, sharpen(n), lookup(M), exists(b) …"""
    name: str
    args: tuple[Node, ...] = child(many=True)
    params: tuple = ()
    span: Span | None = _span()


@frozen
class Mlp(Node):
    """An opaque MLP over its inputs' concatenated vectors, holding its weights as tables
    `W_in` (d_in × d_mlp), `b_in`, `W_out` (d_mlp × d_out), `b_out`, with `activation`
    between: "gelu" (GPT-2's tanh approximation, trained checkpoints) or "relu" (compiled)."""
    inputs: tuple[Node, ...] = child(many=True)
    W_in: Matrix = child()
    b_in: Matrix = child()
    W_out: Matrix = child()
    b_out: Matrix = child()
    activation: str = "gelu"
    span: Span | None = _span()


@frozen
class Project(Node):
    """Logits over the output vocabulary: `inp` (None for a bias term) through a matrix or a
    predicate over (inp, out) lifted by @hard_scale."""
    operand: Node | None = child()
    predicate: Node = child()
    span: Span | None = _span()


@frozen
class LogitsSum(Node):
    """The sum of logit terms."""
    terms: tuple[Node, ...] = child(many=True)
    span: Span | None = _span()


@frozen
class Predict(Node):
    """The prediction from logits: `softmax` (next token) or `sigmoid` (next-token set)."""
    function: str
    logits: Node = child()
    span: Span | None = _span()


# ---------------------------------------------------------------- program

@frozen
class Binding:
    """`name = value;`. `origin` names the library a binding came from (None: this file)."""
    name: str
    value: Node
    origin: str | None = None
    span: Span | None = _span()


@frozen
class Expect:
    """`@expect subject(input) == expected;`: an executable example."""
    subject: Node
    input: tuple
    expected: tuple
    span: Span | None = _span()


@frozen
class Program:
    """A whole program: its directives, loads, bindings, output and examples."""
    bindings: tuple[Binding, ...] = ()
    output: Node | None = None
    vocab: tuple | None = None
    vocab_name: str | None = None
    maxlen: int | None = None
    causal: bool = False
    bos: str | None = None
    attention: str = "hard"
    hard_scale: float = 1e4
    compat: str | None = None
    loads: tuple[str, ...] = ()
    expects: tuple[Expect, ...] = ()
    source: str | None = field(default=None, eq=False, repr=False)
    # the names the parser bound before the file's own (builtins, the default and loaded
    # libraries' names): a binding that took one would be renamed when the program is read back
    predefined: frozenset[str] = field(default=frozenset(), eq=False, repr=False)
    # where `@output` is written: problems of the whole model point there when the output
    # node has no position of its own (`@output indices;`)
    output_span: Span | None = field(default=None, eq=False, repr=False)

    def binding(self, name: str) -> Binding:
        """The binding called `name` (KeyError if there is none)."""
        for b in self.bindings:
            if b.name == name:
                return b
        raise KeyError(name)


SELECTOR_NODES = (Select, SelectAnd, SelectOr, SelectNot, ScoreSum, ScoreScale)


def walk(node: Node):
    """Every node of an expression tree, children before parents (no Ref is followed)."""
    stack = [(node, False)]
    while stack:
        n, done = stack.pop()
        if done:
            yield n
            continue
        stack.append((n, True))
        for c in reversed(n.children()):
            stack.append((c, False))
