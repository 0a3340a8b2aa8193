"""The base environment: builtin functions (called with unevaluated argument trees, so that
select's `op` can see `k` and `q`) and the source s-ops."""

from __future__ import annotations

import functools
from pathlib import Path

import lark

from rasp_ir import nodes as ir
from rasp_ir import ops
from rasp_ir import types as T
from rasp_ir.diagnostics import RaspError

from .values import Builtin, Env, Function, Issue, Term, describe_value, is_atom

_MISSING = object()

# keyword spellings of both traditions: RASP 0.1 (keys, queries) and D-RASP (k, q, s, v, inp)
_ALIASES = {"k": "keys", "q": "queries", "predicate": "op", "s": "sel", "v": "values",
            "x": "inp", "sop": "values"}


class Args:
    """A builtin call's arguments, matched to parameter names and elaborated on demand."""

    def __init__(self, el, builtin: Builtin, positional, keywords, env, span):
        self.el, self.env, self.span, self.name = el, env, span, builtin.name
        params = builtin.params
        variadic = params and params[0].startswith("*")
        self.trees: dict = {}
        if variadic:
            self.trees[params[0][1:]] = list(positional)
            params = params[1:]
        elif len(positional) > len(params):
            raise Issue("E240", f"wrong number of arguments for {builtin.name}: expected at "
                        f"most {len(params)}, got {len(positional)}", span)
        else:
            self.trees.update(zip(params, positional))
        for key, tree in keywords.items():
            name = _ALIASES.get(key, key) if _ALIASES.get(key, key) in params else key
            if name not in params:
                raise Issue("E240", f"{builtin.name} has no parameter `{key}`", span,
                            f"its parameters are {', '.join(params)}")
            if name in self.trees:
                raise Issue("E240", f"argument `{name}` of {builtin.name} given twice", span)
            self.trees[name] = tree

    def has(self, name) -> bool:
        return name in self.trees

    def tree(self, name):
        return self.trees[name]

    def value(self, name, default=_MISSING):
        if name not in self.trees:
            if default is _MISSING:
                raise Issue("E240", f"{self.name} needs the argument `{name}`", self.span)
            return default
        return self.el.arg_value(self.trees[name], self.env)

    def term(self, name, code="E205", what="an s-op"):
        value = self.value(name)
        if isinstance(value, Term):
            return value
        if value is None or isinstance(value, (bool, int, float, str)):
            return Term(ir.Const(value), T.Cat((value,)))
        raise Issue(code, f"{self.name} expects {what} as `{name}`, got "
                    f"{describe_value(value)}", self.span)


# ---------------------------------------------------------------- attention

def _select(el, a: Args, span):
    keys = a.term("keys", "E210")
    queries = a.term("queries", "E210") if a.has("queries") else None
    names = ("k", "q") if queries is not None else ("k",)
    types = {"k": _basis_type(keys.type)}
    if queries is not None:
        types["q"] = _basis_type(queries.type)
    pred = predicate(el, a, names, types)
    if isinstance(pred, ir.Lambda) and queries is not None:
        pred = _as_comparison(pred)
    node = ir.Select(keys.node, queries.node if queries is not None else None, pred, span=span)
    return el.typed(node, span)


def _basis_type(t):
    """A predicate over a vector side ranges over the vector's basis values (like project's
    `inp`): the predicate is a 0/1 matrix applied bilinearly (docs/language.md, select)."""
    return T.Cat(T.basis_of(t)) if isinstance(t, T.Vec) else t


def predicate(el, a: Args, names, types):
    """The `op` of select or project: a comparison token, a predicate over the parameters,
    a lambda, a constant truth value, or a matrix."""
    tree = a.tree("op") if a.has("op") else None
    if tree is None:
        raise Issue("E240", f"{a.name} needs `op`", a.span)
    if isinstance(tree, lark.Tree) and tree.data == "op_arg":
        if names != ("k", "q"):
            raise Issue("E211", "a bare comparison needs both keys and queries", a.span)
        return ir.Compare(tree.children[0].value)
    params = {n: Term(ir.Param(n), types.get(n, T.Cat(None))) for n in names}
    value = el.expr(tree, Env(parent=a.env, values=params))
    if isinstance(value, ir.Matrix):
        return value
    if isinstance(value, Function):
        value = el.expand(value, list(params.values()), a.span)
    if isinstance(value, bool):
        return ir.Lambda(names, ir.Const(value))
    if not isinstance(value, Term) or not T.is_sop(value.type):
        raise Issue("E211", f"{a.name}'s op must be a comparison, a predicate over "
                    f"{' and '.join(names)}, or a matrix; got {describe_value(value)}", a.span)
    for n in ir.walk(value.node):
        if isinstance(n, (ir.Ref, ir.Tokens, ir.Indices, ir.Aggregate, ir.Select,
                          ir.SelectorWidth)):
            raise Issue("E211", f"a predicate may only use {' and '.join(names)} and constants",
                        getattr(n, "span", None) or a.span,
                        "compute the s-op first and select on it")
    return ir.Lambda(names, value.node)


def _as_comparison(pred: ir.Lambda):
    """`k OP q` (or `q OP k`) is the plain comparison predicate."""
    body = pred.body
    if isinstance(body, ir.BinaryOp) and body.op in ops.COMPARISONS and \
            isinstance(body.left, ir.Param) and isinstance(body.right, ir.Param):
        pair = (body.left.name, body.right.name)
        if pair == ("k", "q"):
            return ir.Compare(body.op)
        if pair == ("q", "k"):
            return ir.Compare(ops.FLIPPED[body.op])
    return pred


def _aggregate(el, a: Args, span):
    sel = a.value("sel")
    if not isinstance(sel, Term):
        raise Issue("E220", f"aggregate expects a selector first, got {describe_value(sel)}", span)
    values = a.term("values")
    default = a.value("default", None)
    if not is_atom(default):
        raise Issue("E221", "aggregate's default must be a constant", span)
    return el.typed(ir.Aggregate(sel.node, values.node, default, span=span), span)


def _selector_width(el, a: Args, span):
    sel = a.value("sel")
    if not isinstance(sel, Term) or not isinstance(sel.type, T.Sel):
        raise Issue("E224", f"selector_width expects a selector, got {describe_value(sel)}", span,
                    "build a selector first, e.g. selector_width(select(tokens, tokens, ==))")
    return el.typed(ir.SelectorWidth(sel.node, span=span), span)


# ---------------------------------------------------------------- element-wise

def _elementwise(function):
    def handler(el, a: Args, span):
        x = a.value("x")
        if isinstance(x, Term):
            return el.typed(ir.Call(function, (x.node,), span=span), span)
        if function == "indicator":
            raise Issue("E204", f"indicator expects an s-op, got {describe_value(x)}", span)
        if function in ("numerical", "categorical"):
            return x
        try:
            return ops.call(function, x)
        except (TypeError, ValueError, OverflowError) as exc:
            raise Issue("E201", f"{function}({x!r}): {exc}", span) from None
    return handler


def _meta_only(fn):
    def handler(el, a: Args, span):
        args = [a.value(n) for n in _meta_params(a)]
        if any(isinstance(v, Term) for v in args):
            raise Issue("E205", f"{a.name} works on constants; its argument here is an s-op",
                        span)
        try:
            return fn(*args)
        except (TypeError, ValueError) as exc:
            raise Issue("E201", f"{a.name}: {exc}", span) from None
    return handler


def _range(el, a: Args, span):
    """range(...) as a list, counted against limits.MAX_EXPANSION before it is built."""
    def build(*r):
        numbers = range(*r)
        el.grow(len(numbers), span)
        return list(numbers)
    return _meta_only(build)(el, a, span)


def _meta_params(a: Args):
    return [n for n in ("a", "b", "c") if n in a.trees]


def _zip(el, a: Args, span):
    lists = [el.arg_value(t, a.env) for t in a.trees["items"]]
    for value in lists:
        if not isinstance(value, (list, tuple, str, dict)):
            raise Issue("E205", f"zip takes lists, got {describe_value(value)}", span)
    return [list(t) for t in zip(*lists)]


def _draw(el, a: Args, span):
    return el.apply(a.term("x"), a.value("input"), span)


# ---------------------------------------------------------------- D-RASP

def _vector_term(a: Args, name="x"):
    value = a.term(name)
    if not isinstance(value.type, (T.Vec, T.Cat, T.Num)):
        raise Issue("E201", f"{a.name} expects a vector, got {describe_value(value)}", a.span)
    return value


def _number(a: Args, name, default=_MISSING):
    value = a.value(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise Issue("E205", f"{a.name}'s `{name}` must be a number", a.span)
    return value


def _harden(el, a, span):
    return el.typed(ir.Primitive("harden", (_vector_term(a).node,), span=span), span)


def _sharpen(el, a, span):
    x = _vector_term(a)
    return el.typed(ir.Primitive("sharpen", (x.node,), (_number(a, "n"),), span=span), span)


def _exists(el, a, span):
    x = _vector_term(a)
    value = a.value("value")
    threshold = _number(a, "threshold", 0.1)
    return el.typed(ir.Primitive("exists", (x.node,), (value, threshold), span=span), span)


def _is_pure(el, a, span):
    x = _vector_term(a)
    threshold = _number(a, "threshold", 0.5)
    return el.typed(ir.Primitive("is_pure", (x.node,), (threshold,), span=span), span)


def _basis_value(a: Args, name):
    value = a.value(name)
    if not is_atom(value):
        raise Issue("E205", f"{a.name}'s `{name}` must be a basis value (a constant), got "
                    f"{describe_value(value)}", a.span)
    return value


def _balance(el, a, span):
    x = _vector_term(a)
    first, second = _basis_value(a, "a"), _basis_value(a, "b")
    tolerance = _number(a, "tolerance", 1e-6)
    if tolerance < 0:
        raise Issue("E205", f"balance's `tolerance` must be at least 0, got {tolerance!r}", span)
    node = ir.Primitive("balance", (x.node,), (first, second, tolerance), span=span)
    return el.typed(node, span)


def _diff(el, a, span):
    x = _vector_term(a)
    first, second = _basis_value(a, "a"), _basis_value(a, "b")
    bins = a.value("bins", 5)
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 1:
        raise Issue("E205", f"diff's `bins` must be a whole number of at least 1, got "
                    f"{describe_value(bins)}", span, "bins per unit: diff(x, a, b, 5) has 11 bins")
    return el.typed(ir.Primitive("diff", (x.node,), (first, second, bins), span=span), span)


def _tally(el, a, span):
    x = _vector_term(a)
    first, second = _basis_value(a, "a"), _basis_value(a, "b")
    low, high = a.value("low"), a.value("high")
    for bound in (low, high):
        if isinstance(bound, bool) or not isinstance(bound, int):
            raise Issue("E205", f"tally's bounds must be whole numbers, got "
                        f"{describe_value(bound)}", span, "tally(x, a, b, 0, 3): 0 … 3")
    if low > high:
        raise Issue("E205", f"tally's `low` ({low}) is above its `high` ({high})", span)
    node = ir.Primitive("tally", (x.node,), (first, second, low, high), span=span)
    return el.typed(node, span)


def _erase(el, a, span):
    return el.typed(ir.Primitive("erase", (_vector_term(a).node,), span=span), span)


def _ordered(name):
    """least_above(x, y, first, last, threshold=0.1) and greatest_below(…): y must be
    categorical (its value is compared), first and last are basis values of x."""
    def handler(el, a, span):
        x, y = _vector_term(a, "x"), _vector_term(a, "y")
        first, last = _basis_value(a, "first"), _basis_value(a, "last")
        threshold = _number(a, "threshold", 0.1)
        node = ir.Primitive(name, (x.node, y.node), (first, last, threshold), span=span)
        return el.typed(node, span)
    return handler


def _product(el, a, span):
    x, y = _vector_term(a, "x"), _vector_term(a, "y")
    return el.typed(ir.Primitive("product", (x.node, y.node), span=span), span)


def _lookup(el, a, span):
    x = _vector_term(a)
    table = a.value("table")
    if not isinstance(table, ir.Matrix):
        raise Issue("E212", "lookup's table must be a matrix(...) or table(...)", span)
    return el.typed(ir.Primitive("lookup", (x.node, table), span=span), span)


def _normalize(el, a, span):
    x = _vector_term(a)
    scale = a.term("scale")
    if not isinstance(scale.type, (T.Num, T.Cat)):
        raise Issue("E201", f"normalize divides by a number per position, got "
                    f"{describe_value(scale)}", span, "normalize(x, 1 / (indices + 1))")
    return el.typed(ir.Primitive("normalize", (x.node, scale.node), span=span), span)


def _token_id(el, a, span):
    # A lookup over @vocab in its order, so a model's token ids become numbers an op can
    # compare (`token_id(k) > token_id(q)`) without a 154-entry table on the page; the
    # interpreter, the types and the compiler read it as the lookup it is.
    x = a.value("x")
    vocab = el.ctx.vocab
    if vocab is None:
        raise Issue("E205", "token_id numbers the tokens of @vocab, and the program declares "
                    "none before this line", span, 'declare it first, e.g. @vocab {"a", "b"};')
    if isinstance(x, Term):
        node = ir.Lookup(tuple(vocab), tuple(range(len(vocab))), x.node, name="token_id",
                         span=span)
        return el.typed(node, span)
    if x not in vocab:
        raise Issue("E206", f"token_id({x!r}): {x!r} is not a token of @vocab", span)
    return vocab.index(x)


MLP_ACTIVATIONS = ("gelu", "relu")


def _mlp(el, a, span):
    inputs = [el.arg_value(t, a.env) for t in a.trees["inputs"]]
    if not inputs or not all(isinstance(i, Term) for i in inputs):
        raise Issue("E205", "mlp's inputs must be s-ops or vectors", span)
    tables = []
    for name in ("W_in", "b_in", "W_out", "b_out"):
        value = a.value(name)
        if not isinstance(value, ir.Matrix):
            raise Issue("E212", f"mlp's {name} must be a matrix(...) or table(...)", span)
        tables.append(value)
    activation = a.value("activation", "gelu")
    if activation not in MLP_ACTIVATIONS:
        raise Issue("E212", f"mlp's activation must be one of {', '.join(map(repr, MLP_ACTIVATIONS))}, "
                    f"got {activation!r}", span)
    node = ir.Mlp(tuple(i.node for i in inputs), *tables, activation=activation, span=span)
    return el.typed(node, span)


def _project(el, a, span):
    operand = _vector_term(a, "inp") if a.has("inp") else None
    names = ("inp", "out") if operand is not None else ("out",)
    types = {"out": T.Cat(el.ctx.vocab)}
    if operand is not None:
        types["inp"] = T.Cat(T.basis_of(operand.type))
    pred = predicate(el, a, names, types)
    node = ir.Project(operand.node if operand is not None else None, pred, span=span)
    return el.typed(node, span)


def _predict(function):
    def handler(el, a, span):
        logits = a.term("x")
        return el.typed(ir.Predict(function, logits.node, span=span), span)
    return handler


def _matrix(el, a, span):
    """`matrix(rows={label: value, …})` (a vector), `matrix(cols=[…], rows={label: [values],
    …})` (a matrix), or the positional `matrix(rows=[…], cols=[…], values=[…])`."""
    rows = a.value("rows")
    cols = a.value("cols", None)
    row_spans = None
    if isinstance(rows, dict):
        if a.has("values"):
            raise Issue("E212", "a matrix with labelled rows takes no values=", span,
                        "write each row's values after its label: rows={label: [...], ...}")
        rows, values = tuple(rows), list(rows.values())
        # a grid spans several lines: point at the row at fault, when it is written here
        tree = a.tree("rows")
        if isinstance(tree, lark.Tree) and tree.data == "dict":
            pairs = [pair for pair in tree.children if pair is not None]
            if len(pairs) != len(rows):     # a dict keeps the last of two equal keys
                raise Issue("E212", "a row label appears twice in the matrix (1, 1.0 and True "
                            "are the same key)", span, "label each row once, or use the "
                            "positional form matrix(rows=[...], cols=[...], values=[...])")
            row_spans = [el.span(pair) for pair in pairs]
    else:
        values = a.value("values")
    if not isinstance(rows, (list, tuple)) or not isinstance(cols, (list, tuple, type(None))):
        raise Issue("E212", "matrix rows and cols are lists of labels (or rows a dict from "
                    "label to values)", span)
    if not isinstance(values, (list, tuple)):
        raise Issue("E212", "matrix values must be a list", span)
    rows = tuple(rows)
    cols = tuple(cols) if cols is not None else None
    if len(values) != len(rows):
        raise Issue("E212", f"matrix values do not match its rows: {len(rows)} row labels, "
                    f"{len(values)} rows of values", span)
    table = []
    for i, (label, row) in enumerate(zip(rows, values)):
        where = row_spans[i] if row_spans else span
        if cols is None:
            if not _is_number(row):
                raise Issue("E212", f"matrix values must be numbers; row {_label(label)} of "
                            "a vector (no cols) is not", where)
            table.append(float(row))
            continue
        if not isinstance(row, (list, tuple)) or not all(_is_number(v) for v in row):
            raise Issue("E212", f"matrix values must be numbers; row {_label(label)} is not a "
                        "list of numbers", where)
        if len(row) != len(cols):
            raise Issue("E212", f"matrix values do not match its cols: row {_label(label)} has "
                        f"{len(row)} values for {len(cols)} cols", where)
        table.append(tuple(float(v) for v in row))
    if not all(is_atom(label) for label in rows + (cols or ())):
        raise Issue("E212", "matrix rows and cols are labelled with constants", span)
    return ir.Matrix(rows, cols, tuple(table), span=span)


def _is_number(value) -> bool:
    # bools count (as 0 and 1), as they always have: float() accepted them
    return isinstance(value, (int, float))


def _label(label) -> str:
    return repr(label) if is_atom(label) else "(not a constant)"


def _table(el, a, span):
    name = a.value("name")
    if not isinstance(name, str):
        raise Issue("E205", "table takes the name of a table in the side-file", span)
    tables = el.side_tables
    if tables is None:
        from rasp_ir.tables import read_tables, side_file
        path = side_file(Path(el.file))
        if not path.exists():
            raise Issue("E252", f"table {name!r} needs the side-file {path}, which does not "
                        "exist", span)
        try:
            tables = el.side_tables = read_tables(path)
        except RaspError as exc:
            d = exc.diagnostics[0]
            raise Issue(d.code, d.message, span, "write it again with rasp extract or rasp fmt "
                        "--simplify --write, or restore it") from None
    if name not in tables:
        raise Issue("E252", f"no table {name!r} in the side-file", span,
                    f"it holds {', '.join(sorted(tables)) or 'no tables'}")
    return tables[name]


# ---------------------------------------------------------------- the table

def _builtin(name, params, handler):
    return Builtin(name, handler, params)


@functools.cache
def builtin_env() -> Env:
    """Builtins and source s-ops (the library is loaded on top of this)."""
    table = [
        _builtin("select", ("keys", "queries", "op"), _select),
        _builtin("aggregate", ("sel", "values", "default"), _aggregate),
        _builtin("selector_width", ("sel",), _selector_width),
        _builtin("len", ("a",), _meta_only(len)),
        _builtin("range", ("a", "b", "c"), _range),
        _builtin("zip", ("*items",), _zip),
        _builtin("draw", ("x", "input"), _draw),
        _builtin("harden", ("x",), _harden),
        _builtin("sharpen", ("x", "n"), _sharpen),
        _builtin("exists", ("x", "value", "threshold"), _exists),
        _builtin("lookup", ("x", "table"), _lookup),
        _builtin("is_pure", ("x", "threshold"), _is_pure),
        _builtin("balance", ("x", "a", "b", "tolerance"), _balance),
        _builtin("diff", ("x", "a", "b", "bins"), _diff),
        _builtin("tally", ("x", "a", "b", "low", "high"), _tally),
        _builtin("erase", ("x",), _erase),
        _builtin("product", ("x", "y"), _product),
        _builtin("least_above", ("x", "y", "first", "last", "threshold"),
                 _ordered("least_above")),
        _builtin("greatest_below", ("x", "y", "first", "last", "threshold"),
                 _ordered("greatest_below")),
        _builtin("normalize", ("x", "scale"), _normalize),
        _builtin("token_id", ("x",), _token_id),
        _builtin("mlp", ("*inputs", "W_in", "b_in", "W_out", "b_out", "activation"), _mlp),
        _builtin("project", ("inp", "op"), _project),
        _builtin("softmax", ("x",), _predict("softmax")),
        _builtin("sigmoid", ("x",), _predict("sigmoid")),
        _builtin("matrix", ("rows", "cols", "values"), _matrix),
        _builtin("table", ("name",), _table),
    ]
    table += [_builtin(f, ("x",), _elementwise(f)) for f in ops.ELEMENTWISE_CALLS]
    values = {b.name: b for b in table}
    tokens = Term(ir.Tokens(), T.Cat(None))
    values.update({
        "tokens": tokens, "token": tokens, "tokens_asis": tokens,
        "tokens_str": Term(ir.Tokens("str"), T.Cat(None)),
        "tokens_int": Term(ir.Tokens("int"), T.Cat(None)),
        "tokens_float": Term(ir.Tokens("float"), T.Num(None)),
        "tokens_bool": Term(ir.Tokens("bool"), T.Cat(None)),
        "indices": Term(ir.Indices(), T.Cat(None)), "pos": Term(ir.Indices(), T.Cat(None)),
        "True": True, "False": False, "None": None,
    })
    return Env(values=values)
