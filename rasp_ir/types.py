"""Static types of IR values, the typing rule of every node, and value-set inference.

Types (docs/language.md): `cat[D]` (one value per position from a finite set D, or an unknown
set), `num[R]` (a real per position), `vec[B]` (a real vector over a finite basis), `sel`,
`score`, `logits[O]`. Value sets are inferred the way tracr does it: evaluate each element-wise
operation on every combination of its inputs' value sets, up to `MAX_TABLE` combinations.
"""

from __future__ import annotations

import functools
import itertools
import math
from typing import Any

import attrs
from attrs import frozen

from . import nodes as ir
from . import ops
from . import primitives as P

MAX_TABLE = 1 << 18


@frozen
class Cat:
    """cat[D]: D is an ordered tuple of values, or None when it is not known statically."""
    values: tuple | None = None

    def __str__(self):
        if self.values is None:
            return "cat"
        if set(self.values) <= {True, False} and all(isinstance(v, bool) for v in self.values):
            return "bool"
        return f"cat[{_show_values(self.values)}]"


@frozen
class Num:
    """num[R]: R is a finite value set, or None when unknown."""
    values: tuple | None = None

    def __str__(self):
        return "num" if self.values is None else f"num[{_show_values(self.values)}]"


@frozen
class Vec:
    """vec[B]: a real vector over the basis B; `dist` marks a probability distribution."""
    basis: tuple
    dist: bool = False

    def __str__(self):
        kind = "dist" if self.dist else "vec"
        return f"{kind}[{_show_values(self.basis)}]"


@frozen
class Sel:
    """A boolean selector (query × key)."""

    def __str__(self):
        return "sel"


@frozen
class Score:
    """A real-valued selector (attention logits)."""

    def __str__(self):
        return "score"


@frozen
class Logits:
    """Additive scores over the output vocabulary."""
    out: tuple

    def __str__(self):
        return f"logits[{_show_values(self.out)}]"


Type = Cat | Num | Vec | Sel | Score | Logits
BOOL = Cat((False, True))


def _show_values(values, limit=8) -> str:
    shown = ", ".join(repr(v) for v in values[:limit])
    return "{" + shown + (", …" if len(values) > limit else "") + "}"


def is_sop(t) -> bool:
    """A sequence of atoms: cat or num."""
    return isinstance(t, (Cat, Num))


def is_selector(t) -> bool:
    return isinstance(t, (Sel, Score))


_ARITHMETIC = {"+", "-", "*", "/", "%"}


def numeric_op(pred) -> bool:
    """Whether a select's or project's `op=` expression gives numbers rather than truth values:
    a number, arithmetic or a negation at its top (`0.5 * k`, `(k == 0) * 3 - q`), or a
    conditional with such a branch. Such an op is a table of real scores (or logits) used as
    written; a truth value is lifted by @hard_scale. Decided from the expression's form, so
    it is known before any basis is (and says the same on every input)."""
    body = pred.body if isinstance(pred, ir.Lambda) else None
    return body is not None and _numeric_expr(body)


def _numeric_expr(node) -> bool:
    if isinstance(node, ir.Const):
        return isinstance(node.value, (int, float)) and not isinstance(node.value, bool)
    if isinstance(node, ir.BinaryOp):
        return node.op in _ARITHMETIC
    if isinstance(node, ir.UnaryOp):
        return node.op in ("-", "+")
    if isinstance(node, ir.Cond):
        return _numeric_expr(node.then) or _numeric_expr(node.otherwise)
    return False


def a(word: str) -> str:
    """`word` with its indefinite article."""
    return ("an " if word[0] in "aeiou" or word.startswith("s-op") else "a ") + word


def describe(t) -> str:
    """The word users know for a kind of value."""
    if is_sop(t):
        return "s-op"
    if isinstance(t, Sel):
        return "selector"
    if isinstance(t, Score):
        return "score selector"
    if isinstance(t, Vec):
        return "vector"
    return "logits"


class TypeIssue(Exception):
    """A typing rule failed: a coded message and a hint; the caller attaches the span."""

    def __init__(self, code: str, message: str, hint: str | None = None, node=None):
        super().__init__(message)
        self.code, self.message, self.hint, self.node = code, message, hint, node


@attrs.define
class Context:
    """Program-level facts the typing rules read."""
    vocab: tuple | None = None
    maxlen: int | None = None
    attention: str = "hard"
    bindings: dict = attrs.Factory(dict)   # name -> Type
    params: dict = attrs.Factory(dict)     # predicate parameter -> Type
    memo: dict = attrs.Factory(dict)       # node -> Type, for nodes already typed here
    # warnings found while typing: unlike an error, a warning does not stop the node's type
    warnings: list = attrs.Factory(list)

    @classmethod
    def of(cls, program: ir.Program) -> "Context":
        return cls(vocab=program.vocab, maxlen=program.maxlen, attention=program.attention)


# ---------------------------------------------------------------- value sets

def _values(t) -> tuple | None:
    return t.values if is_sop(t) else None


def _normalise(values) -> tuple:
    seen = {}
    for v in values:
        seen.setdefault((type(v), v), v)
    return ops.sorted_values(seen.values())


def map_values(fn, *value_sets) -> tuple | None:
    """{fn(a, b, …)} over every combination, dropping combinations that raise (they are
    runtime errors if they ever occur). None if a set is unknown or the table is too big."""
    if any(vs is None for vs in value_sets):
        return None
    if math.prod(len(vs) for vs in value_sets) > MAX_TABLE:
        return None
    out = []
    for combo in itertools.product(*value_sets):
        try:
            out.append(fn(*combo))
        except (ArithmeticError, TypeError, ValueError, KeyError, OverflowError):
            pass
    return _normalise(out)


def all_fail(fn, *value_sets) -> bool:
    """True when value sets are known, non-empty, and every combination raises TypeError."""
    if any(not vs for vs in value_sets):
        return False
    if math.prod(len(vs) for vs in value_sets) > MAX_TABLE:
        return False
    for combo in itertools.product(*value_sets):
        try:
            fn(*combo)
            return False
        except TypeError:
            continue
        except (ArithmeticError, ValueError, KeyError):
            return False
    return True


def mean_values(values: tuple | None, maxlen: int | None) -> tuple | None:
    """Value set of a hard mean over up to `maxlen` keys (known only for {0, 1} inputs)."""
    if values is None or maxlen is None or not set(values) <= {0, 1}:
        return None
    if maxlen * (maxlen + 1) // 2 > 4 * MAX_TABLE:     # too many fractions to enumerate
        return None
    fractions = {p / m for m in range(1, maxlen + 1) for p in range(m + 1)}
    return _normalise(fractions | {0})


def basis_of(t) -> tuple | None:
    """The basis a value is one-hot (cat) or real (vec) over, if known."""
    if isinstance(t, Vec):
        return t.basis
    if isinstance(t, Cat):
        return t.values
    return None


def source_type(node, ctx: Context):
    """Types of tokens and indices."""
    if isinstance(node, ir.Indices):
        return Cat(tuple(range(ctx.maxlen)) if ctx.maxlen else None)
    if ctx.vocab is None:
        return Cat(None)
    if node.view == "asis":
        return Cat(ctx.vocab)
    convert = {"str": str, "int": int, "float": float, "bool": bool}[node.view]
    values = map_values(convert, ctx.vocab)
    return Num(values) if node.view == "float" else Cat(values)


# ---------------------------------------------------------------- typing rules

def rule(node, ctx: Context, kids: list):
    """The type of `node` given its children's types (in `children()` order)."""
    method = _RULES.get(type(node))
    if method is None:
        raise TypeIssue("E201", f"{type(node).__name__} has no value of its own")
    return method(node, ctx, kids)


def _ref(node, ctx, kids):
    if node.name not in ctx.bindings:
        raise TypeIssue("E250", f"undefined binding `{node.name}`")
    return ctx.bindings[node.name]


def _param(node, ctx, kids):
    return ctx.params.get(node.name, Cat(None))


def _const(node, ctx, kids):
    return Cat((node.value,))


def _require_sops(kids, what):
    for t in kids:
        if not is_sop(t):
            raise TypeIssue("E214" if is_selector(t) else "E201",
                            f"cannot apply {what} to {a(describe(t))}",
                            "selectors combine with `and`, `or`, `not` and `+`")


def _unary(node, ctx, kids):
    _require_sops(kids, node.op)
    (t,) = kids
    values = map_values(lambda a: ops.unary(node.op, a), t.values)
    if node.op == "not":
        return Cat(values)
    if t.values is not None and all_fail(lambda a: ops.unary(node.op, a), t.values):
        raise TypeIssue("E201", f"cannot apply unary {node.op} to values of {t}")
    return type(t)(values)


def _binary(node, ctx, kids):
    _require_sops(kids, f"`{node.op}`")
    left, right = kids
    fn = lambda a, b: ops.binary(node.op, a, b)  # noqa: E731
    if all_fail(fn, left.values, right.values):
        raise TypeIssue("E201", f"`{node.op}` cannot combine values of {left} and {right}",
                        "convert one side first, e.g. tokens_int or str(...)")
    values = map_values(fn, left.values, right.values)
    if node.op in ops.ARITHMETIC and (isinstance(left, Num) or isinstance(right, Num)):
        return Num(values)
    return Cat(values)


def _cond(node, ctx, kids):
    cond, then, otherwise = kids
    if not is_sop(cond):
        raise TypeIssue("E203", f"the condition of `if … else` is {a(describe(cond))}, "
                        "not a boolean s-op")
    if not (is_sop(then) and is_sop(otherwise)):
        raise TypeIssue("E203", f"the branches of `if … else` are {a(describe(then))} and a "
                        f"{describe(otherwise)}; both must be s-ops")
    values = None
    if then.values is not None and otherwise.values is not None:
        values = _normalise(then.values + otherwise.values)
    numeric = isinstance(then, Num) or isinstance(otherwise, Num)
    words = [v for v in values or () if isinstance(v, str)]
    if numeric and words:
        # a numerical s-op is averaged and added; a word among its values fails there, at
        # run time, far from the `if` that let it in
        raise TypeIssue("E203", f"the branches of `if … else` mix a number and "
                        f"{_show_values(words)}: a numerical s-op holds numbers only",
                        "make both branches numbers, or read the numerical one as a category "
                        "with categorical(…)")
    return Num(values) if numeric else Cat(values)


def _in(node, ctx, kids):
    _require_sops(kids, "`in`")
    return BOOL


def _lookup(node, ctx, kids):
    (t,) = kids
    _require_sops(kids, "a table lookup")
    if t.values is not None:
        table = dict(zip(node.keys, node.values))
        missing = [v for v in t.values if v not in table]
        if missing:
            raise TypeIssue("E206", f"the value {missing[0]!r} of the index's value set is "
                            "missing from the table",
                            f"add a key for each of {_show_values(tuple(missing))}")
        return Cat(_normalise(table[v] for v in t.values))
    return Cat(_normalise(node.values))


def _call(node, ctx, kids):
    name = node.function
    (t,) = kids
    if name == "indicator":
        if not is_sop(t):
            raise TypeIssue("E204", f"indicator expects a boolean s-op, got {a(describe(t))}")
        return Num((0, 1))
    _require_sops(kids, name)
    values = map_values(lambda a: ops.call(name, a), t.values)
    if name == "round" and t.values is not None and all_fail(ops.rasp_round, t.values):
        raise TypeIssue("E201", f"round expects numbers, got values of {t}")
    if name == "numerical":
        return Num(t.values)
    if name == "categorical" or name in ("round", "str", "int", "bool"):
        return Cat(values)
    return type(t)(values)


def _compare_pred(node, ctx, kids):
    raise TypeIssue("E211", "a comparison operator is only meaningful inside select")


def _lambda(node, ctx, kids):
    return kids[0]


def _matrix(node, ctx, kids):
    raise TypeIssue("E212", "a matrix is only meaningful as the op of select or project")


def _predicate_table(pred, ctx, names, bases):
    """Check a Compare/Lambda predicate gives booleans on the given bases (when known)."""
    if isinstance(pred, ir.Lambda):
        body_type = type_of(pred.body, attrs.evolve(
            ctx, params={n: Cat(b) for n, b in zip(names, bases)}, memo={}))
        if not is_sop(body_type):
            raise TypeIssue("E211", f"the predicate is {a(describe(body_type))}, not a boolean")


def _select(node, ctx, kids):
    key_t = kids[0]
    query_t = kids[1] if node.queries is not None else None
    for side, t in (("keys", key_t), ("queries", query_t)):
        if t is not None and not (is_sop(t) or isinstance(t, Vec)):
            raise TypeIssue("E210", f"select's {side} must be an s-op or a vector, "
                            f"got {a(describe(t))}")
    pred = node.predicate
    vector_side = isinstance(key_t, Vec) or isinstance(query_t, Vec)
    if isinstance(pred, ir.Matrix):
        key_basis = basis_of(key_t)
        if query_t is None:
            if pred.cols is not None or (key_basis is not None and len(pred.rows) != len(key_basis)):
                raise TypeIssue("E212", "a query-independent select needs a vector over the "
                                f"key basis ({len(key_basis or ())} entries)")
        else:
            query_basis = basis_of(query_t)
            if pred.cols is None or (query_basis is not None and len(pred.rows) != len(query_basis)) \
                    or (key_basis is not None and len(pred.cols) != len(key_basis)):
                raise TypeIssue("E212", "select's matrix must have one row per query value and "
                                "one column per key value")
        return Score()
    if isinstance(pred, ir.Compare) and query_t is not None and is_sop(key_t) and is_sop(query_t):
        if all_fail(lambda k, q: ops.compare(pred.op, k, q), key_t.values, query_t.values):
            raise TypeIssue("E210", f"keys of {key_t} and queries of {query_t} cannot be "
                            f"compared with {pred.op}")
    if isinstance(pred, ir.Lambda):
        names = pred.params
        bases = [basis_of(key_t)] + ([basis_of(query_t)] if query_t is not None else [])
        _predicate_table(pred, ctx, names, bases)
    if vector_side or numeric_op(pred):
        if basis_of(key_t) is None or (query_t is not None and basis_of(query_t) is None):
            raise TypeIssue("E305", "a numeric op or a predicate over a vector needs a known "
                            "basis", "declare @vocab and @maxlen")
        return Score()
    return Sel()


def _select_logic(node, ctx, kids):
    for t in kids:
        if isinstance(t, Score):
            raise TypeIssue("E213", "scores are real-valued; combine them with `+`")
        if not isinstance(t, Sel):
            raise TypeIssue("E202", "cannot apply and/or/not between a selector and a "
                            f"{describe(t)}")
    return Sel()


def _score_sum(node, ctx, kids):
    for t in kids:
        if not is_selector(t):
            raise TypeIssue("E214", f"cannot add a selector and {a(describe(t))}")
    return Score()


def _aggregate(node, ctx, kids):
    sel_t, value_t = kids
    if not is_selector(sel_t):
        raise TypeIssue("E220", f"aggregate expects a selector first, "
                        f"got {a(describe(sel_t))}",
                        "build one with select(keys, queries, op)")
    soft = isinstance(sel_t, Score) or ctx.attention == "softmax"
    if soft:
        if node.default is not None:
            raise TypeIssue("E223", "a default is meaningless under softmax attention: "
                            "every row attends somewhere")
        if isinstance(value_t, Num):
            return Num(None)
        basis = basis_of(value_t)
        if basis is None:
            raise TypeIssue("E305", "softmax attention over a categorical s-op needs its value "
                            "set", "declare @vocab and @maxlen")
        return Vec(basis, dist=isinstance(value_t, Cat) or value_t.dist)
    if isinstance(value_t, Num):
        if node.default not in (None, 0):
            ctx.warnings.append(TypeIssue("W222", "a numerical aggregate with a non-zero "
                                          "default cannot be compiled", node=node))
            values = mean_values(value_t.values, ctx.maxlen)
            # an empty row reads the default instead of 0
            return Num(None if values is None else _normalise(values + (node.default,)))
        return Num(mean_values(value_t.values, ctx.maxlen))
    if isinstance(value_t, Cat):
        values = value_t.values
        if values is not None:
            values = _normalise(values + (node.default,))
        return Cat(values)
    if isinstance(value_t, Vec):
        return Vec(value_t.basis)
    raise TypeIssue("E201", f"cannot aggregate {a(describe(value_t))}")


def _selector_width(node, ctx, kids):
    (t,) = kids
    if not isinstance(t, Sel):
        raise TypeIssue("E224", f"selector_width expects a selector, got {a(describe(t))}",
                        "build a selector first, e.g. selector_width(select(tokens, tokens, ==))")
    return Cat(tuple(range(ctx.maxlen + 1)) if ctx.maxlen else None)


def _score_scale(node, ctx, kids):
    return _score_sum(node, ctx, kids)


def _primitive(node, ctx, kids):
    """The checks are typing's; the output bases are the semantics' own
    (rasp_ir/primitives.py's `output_basis`), written once."""
    name = node.name
    t = kids[0]
    basis = basis_of(t)
    if name == "normalize" and (basis is not None or isinstance(t, Num)):
        return _normalize(t, kids[1], basis)
    if basis is None:
        raise TypeIssue("E201", f"{name} expects a vector over a known basis, got {t}")
    if name not in P.NAMES:
        raise TypeIssue("E201", f"unknown primitive {name}")
    if name == "exists" and node.params and node.params[0] not in basis:
        raise TypeIssue("E201", f"exists: {node.params[0]!r} is not in the basis "
                        f"{_show_values(basis)}")
    if name == "lookup":
        matrix = node.args[1]
        if len(matrix.rows) != len(basis) or matrix.cols is None:
            raise TypeIssue("E212", f"lookup's table needs {len(basis)} rows (the input basis)")
        return Vec(matrix.cols)
    if name in ("balance", "diff", "tally"):
        _compared_values(name, node.params[:2], basis, t)
    if name in P.COMPARED:
        return _ordered(name, node.params, basis, kids[1])
    if name == "product":
        other = kids[1]
        other_basis = basis_of(other)
        if other_basis is None:
            raise TypeIssue("E201", f"product expects a vector over a known basis, got {other}")
        labels = P.output_basis(name, node.params, basis, other_basis)
        if len(set(labels)) != len(labels):
            raise TypeIssue("E201", f"product: the pairs of {_show_values(basis)} and "
                            f"{_show_values(other_basis)} do not have distinct labels",
                            "a value of one basis contains a comma")
        if isinstance(t, Cat) and isinstance(other, Cat):
            return Cat(labels)
        return Vec(labels, dist=_is_dist(t) and _is_dist(other))
    out = P.output_basis(name, node.params, basis)
    return Cat(out) if name in P.CATEGORICAL else Vec(out, dist=True)


def _ordered(name, params, basis, y) -> Cat:
    """least_above / greatest_below: a range of x's basis, compared with a categorical y."""
    first, last, threshold = params
    if not isinstance(y, Cat):
        raise TypeIssue("E201", f"{name} compares with a categorical value, got {a(describe(y))}",
                        "read a vector as its largest entry first: harden(y)")
    for value in (first, last):
        if value not in basis:
            raise TypeIssue("E201", f"{name}: {value!r} is not in the basis "
                            f"{_show_values(basis)}", "first and last bound the candidates")
    try:
        chosen = P.candidates(basis, first, last)
    except ValueError as exc:
        raise TypeIssue("E201", f"{name}: {exc}", "name the candidates' first value, then "
                        "their last, in basis order") from None
    if None in chosen:
        raise TypeIssue("E201", f"{name}: None cannot be a candidate (it means none qualifies)")
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
        raise TypeIssue("E201", f"{name}'s threshold must be a number, got {threshold!r}")
    return Cat(P.output_basis(name, params, basis))


def _compared_values(name, values, basis, t) -> None:
    """balance, diff and tally compare two different values of the basis (tally's second
    may be None: the first alone)."""
    first, second = values
    pick = "basis values" if name == "tally" else "two of the basis values"
    for value in (first, second):
        if not (name == "tally" and value is None) and value not in basis:
            raise TypeIssue("E201", f"{name}: {value!r} is not in the basis "
                            f"{_show_values(basis)}", f"pick {pick} of {t}")
    if first == second:
        raise TypeIssue("E201", f"{name} compares two different basis values, got "
                        f"{first!r} twice")


def _normalize(t, scale, basis):
    """normalize(x, scale): x over its basis (a number stays a number) divided by a number per
    position; the scale is numerical, or categorical with numbers as its values."""
    numbers = isinstance(scale, Num) or (
        isinstance(scale, Cat) and scale.values is not None
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in scale.values))
    if not numbers:
        raise TypeIssue("E201", f"normalize divides by a number per position, got "
                        f"{a(describe(scale))}",
                        "a numerical s-op, e.g. normalize(x, 1 / (indices + 1))")
    if isinstance(scale, Cat) and 0 in scale.values:
        raise TypeIssue("E201", "normalize's scale can be 0: it divides by it",
                        f"its values are {_show_values(scale.values)}")
    return Num(None) if isinstance(t, Num) else Vec(basis)


def _is_dist(t) -> bool:
    """One-hot or a probability distribution: rows that sum to 1."""
    return isinstance(t, Cat) or (isinstance(t, Vec) and t.dist)


def _mlp(node, ctx, kids):
    width = 0
    for t in kids[:len(node.inputs)]:
        if isinstance(t, Num):
            width += 1
        elif isinstance(t, (Cat, Vec)) and basis_of(t) is not None:
            width += len(basis_of(t))
        else:
            raise TypeIssue("E305", f"mlp's inputs need known bases, got {t}",
                            "declare @vocab and @maxlen")
    w_in, b_in, w_out, b_out = node.W_in, node.b_in, node.W_out, node.b_out

    def bias_fits(b, n):     # a vector of n entries, or a 1 × n matrix
        return len(b.rows) == n if b.cols is None else len(b.rows) == 1 and len(b.cols) == n
    if w_in.cols is None or w_out.cols is None or len(w_in.rows) != width \
            or len(w_out.rows) != len(w_in.cols) or not bias_fits(b_in, len(w_in.cols)) \
            or not bias_fits(b_out, len(w_out.cols)):
        raise TypeIssue("E212", f"mlp's tables do not fit: W_in needs {width} rows (the "
                        "inputs' width) and one column per hidden unit, b_in one entry per "
                        "hidden unit, W_out one row per hidden unit, b_out one entry per output")
    return Vec(tuple(w_out.cols))


def _project(node, ctx, kids):
    pred = node.predicate
    if isinstance(pred, ir.Matrix):
        # A table's labels name the outputs, so logits need not range over @vocab (a
        # compiled model's outputs are the program's output values, not its input tokens).
        if node.operand is None and pred.cols is not None:
            raise TypeIssue("E212", "project's bias is a vector over the outputs, not a matrix")
        if node.operand is not None and pred.cols is None:
            raise TypeIssue("E212", "project's table needs one row per basis value of its input "
                            "and one column per output")
        out = tuple(pred.rows if node.operand is None else pred.cols)
    else:
        out = ctx.vocab
        if out is None:
            raise TypeIssue("E231", "project needs the output vocabulary", "declare @vocab")
    if node.operand is not None:
        t = kids[0]
        if basis_of(t) is None or not (isinstance(t, (Vec, Cat))):
            raise TypeIssue("E231", f"project expects a vector or categorical s-op, got {t}")
        if isinstance(pred, ir.Matrix) and len(pred.rows) != len(basis_of(t)):
            raise TypeIssue("E212", f"project's table needs one row per basis value of its "
                            f"input ({len(basis_of(t))})")
    return Logits(out)


def _logits_sum(node, ctx, kids):
    outs = {t.out for t in kids if isinstance(t, Logits)}
    if len(outs) != 1 or not all(isinstance(t, Logits) for t in kids):
        raise TypeIssue("E232", "only logits over the same vocabulary can be added")
    return kids[0]


def _predict(node, ctx, kids):
    (t,) = kids
    if not isinstance(t, Logits):
        raise TypeIssue("E232", f"{node.function} expects logits, got {a(describe(t))}")
    return Vec(t.out, dist=True)


_RULES = {
    ir.Tokens: lambda n, c, k: source_type(n, c),
    ir.Indices: lambda n, c, k: source_type(n, c),
    ir.Const: _const, ir.Ref: _ref, ir.Param: _param,
    ir.UnaryOp: _unary, ir.BinaryOp: _binary, ir.Cond: _cond, ir.In: _in, ir.Lookup: _lookup,
    ir.Call: _call, ir.Lambda: _lambda, ir.Compare: _compare_pred, ir.Matrix: _matrix,
    ir.Select: _select, ir.SelectAnd: _select_logic, ir.SelectOr: _select_logic,
    ir.SelectNot: _select_logic, ir.ScoreSum: _score_sum, ir.ScoreScale: _score_scale,
    ir.Aggregate: _aggregate, ir.SelectorWidth: _selector_width, ir.Primitive: _primitive,
    ir.Mlp: _mlp, ir.Project: _project, ir.LogitsSum: _logits_sum, ir.Predict: _predict,
}

# children whose type is not needed (predicates and tables are checked by their parent)
_OPAQUE = (ir.Compare, ir.Matrix, ir.Lambda)


def type_of(node, ctx: Context):
    """The type of an expression, checking every node under it (raises TypeIssue)."""
    if isinstance(node, ir.Lambda):
        return type_of(node.body, ctx)
    known = ctx.memo.get(node)
    if known is not None:
        return known
    kids = [None if isinstance(c, _OPAQUE) else type_of(c, ctx) for c in node.children()]
    try:
        result = rule(node, ctx, kids)
    except TypeIssue as issue:
        issue.node = issue.node or node
        raise
    if not isinstance(node, ir.Ref):      # a name can be bound again in a REPL session
        ctx.memo[node] = result
    return result


def infer(program: ir.Program) -> tuple[dict, list[TypeIssue]]:
    """Types of every binding and of the output, and every typing problem found."""
    types, problems = _infer_cached(program)
    return dict(types), list(problems)


@functools.lru_cache(maxsize=32)
def _infer_cached(program: ir.Program) -> tuple[dict, list[TypeIssue]]:
    # value-set inference is the costly part of checking, interpreting and compiling; the
    # same program is typed again and again (one interpreter run per input in tests)
    ctx = Context.of(program)
    problems = []
    for b in program.bindings:
        try:
            ctx.bindings[b.name] = type_of(b.value, ctx)
        except TypeIssue as issue:
            problems.append(issue)
            ctx.bindings[b.name] = Cat(None)
        problems += ctx.warnings
        ctx.warnings.clear()
    if program.output is not None:
        try:
            ctx.bindings["@output"] = type_of(program.output, ctx)
        except TypeIssue as issue:
            problems.append(issue)
        problems += ctx.warnings
    return ctx.bindings, problems


def output_type(program: ir.Program):
    """The type of the program's output (None without @output)."""
    types, _ = infer(program)
    return types.get("@output")


def value_set_size(t: Any) -> int | None:
    values = basis_of(t)
    return None if values is None else len(values)
