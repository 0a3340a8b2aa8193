"""Hypothesis strategies for well-typed IR programs, built directly as IR (not as text).

`programs()` draws the directives (@vocab of strings or ints, @maxlen, optional @causal and
@bos), then 1..8 bindings whose values are random expressions over `tokens`, `indices`,
constants and earlier bindings, then an @output. Every candidate node is checked with
`rasp_ir.types.type_of` in the program's context and only well-typed ones are kept, so every
program the strategy returns passes `rasp_ir.types.infer`.

The IR is drawn in the canonical form the elaborator builds (the form `parse(pretty(p))` can
give back): no operation on constants alone (the elaborator folds those), no top-level binding
of a bare constant or source (those are aliases, not bindings), `k OP q` predicates as
`Compare`, sums of selectors and logits flattened. `inputs_for(program)` draws valid inputs.
"""

from __future__ import annotations

import keyword

from hypothesis import strategies as st

from grammar.library import base_environment
from rasp_ir import nodes as ir
from rasp_ir import ops
from rasp_ir import types as T
from rasp_ir.names import RESERVED

# ---------------------------------------------------------------- names


def _forbidden_names() -> frozenset:
    base, library = base_environment()
    words = {"def", "return", "for", "in", "if", "else", "and", "or", "not", "lambda", "load",
             "True", "False", "None", "k", "q", "inp", "out", "V"}
    return frozenset(base.names() | set(library) | RESERVED | words | set(keyword.kwlist)
                     | set(keyword.softkwlist))


FORBIDDEN_NAMES = _forbidden_names()
_NAME_POOL = ("x", "y", "z", "a1", "b2", "acc", "flip", "prev", "cnt", "hist", "w_1", "Sel",
              "_tmp", "score", "vec", "lg", "out2", "res", "e1", "sortkey")
binding_names = st.sampled_from(_NAME_POOL) | st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,7}",
                                                            fullmatch=True)

# ---------------------------------------------------------------- atoms

# characters that exercise the printer's string escapes and the lexer
_TOKEN_CHARS = st.sampled_from(list("abcdexyz019 <>_-+'\"\\#;é\t") + ["\u2603", "\x07"])
string_tokens = st.text(_TOKEN_CHARS, min_size=1, max_size=3)
int_tokens = st.integers(-3, 20)
_FLOATS = (0.5, -1.5, 2.25, 0.001, 1e-05, -0.25, 3.0, 1e+16, 12.345678901234567, -7.75)
numbers = (st.integers(-5, 12) | st.sampled_from(_FLOATS)
           | st.floats(-1000, 1000, allow_nan=False, allow_infinity=False))
atoms = numbers | string_tokens | st.booleans() | st.none()
small_floats = st.sampled_from((0.0, 1.0, -1.0, 0.5, -2.5, 2.0, 3.25, -0.125)) | \
    st.floats(-8, 8, allow_nan=False, allow_infinity=False)
# table entries: integral ones print as integers (up to 2**53, beyond it as floats), the rest
# in their shortest repr; -0.0 reads back as 0.0, which compares equal
table_numbers = (small_floats | st.integers(-30, 30).map(float)
                 | st.sampled_from((-0.0, 0.1, 1e-05, 2.0 ** 53, 2.0 ** 53 + 2, 1e16, -1e16,
                                    12.345678901234567, 1e300)))
# table labels of one kind or mixed (1 and True are one dict key: the printer then falls back
# to the positional form)
table_labels = st.one_of(string_tokens, int_tokens, st.booleans(),
                         st.sampled_from((0.5, -2.0, None)))


def distinct_labels(min_size=1, max_size=4):
    """Labels no two of which are equal (equal labels would be one basis value)."""
    kinds = st.sampled_from([string_tokens, int_tokens, st.booleans(), table_labels])
    return kinds.flatmap(lambda kind: st.lists(kind, min_size=min_size, max_size=max_size)).map(
        lambda xs: [x for i, x in enumerate(xs) if x not in xs[:i]]).filter(
        lambda xs: len(xs) >= min_size)


@st.composite
def vocabularies(draw):
    """A few string tokens (odd characters included), or a few ints."""
    if draw(st.booleans()):
        return tuple(draw(st.lists(string_tokens, min_size=1, max_size=6, unique=True)))
    return tuple(draw(st.lists(int_tokens, min_size=1, max_size=6, unique=True)))


# ---------------------------------------------------------------- flavours of value sets

def flavour(t) -> str | None:
    """'num', 'bool', 'str' when every value of the set is of that kind; None otherwise."""
    if isinstance(t, T.Num):
        return "num"
    if not isinstance(t, T.Cat) or not t.values:
        return None
    vs = t.values
    if all(isinstance(v, bool) for v in vs):
        return "bool"
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vs):
        return "num"
    if all(isinstance(v, str) for v in vs):
        return "str"
    return None


def _fits(t, want) -> bool:
    if want is None:
        return T.is_sop(t)
    if want == "bool":      # truthiness works on anything; prefer real booleans
        return flavour(t) == "bool"
    return flavour(t) == want


def _magnitude_ok(t) -> bool:
    """Keep value sets small in magnitude, so value-set inference stays cheap."""
    vs = T.basis_of(t) if not isinstance(t, T.Num) else t.values
    if vs is None:
        return True
    if len(vs) > 400:
        return False
    return all(not isinstance(v, (int, float)) or isinstance(v, bool) or abs(v) < 1e6
               or v == 1e+16 for v in vs)


def _is_const(node) -> bool:
    return isinstance(node, ir.Const)


def _small_basis(t, limit=16) -> tuple | None:
    basis = T.basis_of(t)
    if basis is None or not 0 < len(basis) <= limit:
        return None
    if len(set(basis)) != len(basis):      # 1 and 1.0, or 1 and True: one dict key / label
        return None
    return basis


# ---------------------------------------------------------------- the builder

class _Builder:
    """Draws expressions of each kind in the context of a program being built."""

    def __init__(self, draw, vocab, maxlen, drasp):
        self.draw = draw
        self.vocab = vocab
        self.ctx = T.Context(vocab=vocab, maxlen=maxlen, attention="hard")
        self.drasp = drasp
        self.vocab_kind = "str" if isinstance(vocab[0], str) else "num"

    # ------------------------------------------------------------ helpers

    def check(self, node):
        """(node, type) if `node` is well typed and its values stay small; else None."""
        try:
            t = T.type_of(node, self.ctx)
        except T.TypeIssue:
            return None
        if not _magnitude_ok(t):
            return None
        return node, t

    def pick(self, n: int) -> int:
        return self.draw(st.integers(0, n - 1))

    def coin(self, p_true=0.5) -> bool:
        return self.draw(st.integers(0, 99)) < int(p_true * 100)

    def refs(self, accept):
        return [(ir.Ref(name), t) for name, t in self.ctx.bindings.items() if accept(t)]

    def const(self, want):
        draw = self.draw
        if want == "str":
            pool = list(self.vocab) if self.vocab_kind == "str" else []
            value = draw(st.sampled_from(pool) | string_tokens if pool else string_tokens)
        elif want == "bool":
            value = draw(st.booleans())
        elif want == "num":
            pool = list(self.vocab) if self.vocab_kind == "num" else []
            value = draw(st.sampled_from(pool) | numbers if pool else numbers)
        else:
            value = draw(st.none() | st.booleans() | numbers | string_tokens)
        return ir.Const(value), T.Cat((value,))

    # ------------------------------------------------------------ s-ops

    def leaf(self, want=None):
        """A source, or a reference to an earlier binding, of the wanted flavour."""
        if want == "bool":
            return self.bool_leaf()
        options = []
        if want in (None, "num"):
            options.append((ir.Indices(), T.type_of(ir.Indices(), self.ctx)))
        tokens_t = T.type_of(ir.Tokens(), self.ctx)
        if _fits(tokens_t, want):
            options.append((ir.Tokens(), tokens_t))
        options += self.refs(lambda t: _fits(t, want) and T.is_sop(t))
        if want == "str" and self.vocab_kind == "num":
            options.append(self.check(ir.Tokens("str")))
        if self.vocab_kind == "num" and self.coin(0.15):
            view = {"num": "float", "bool": "bool"}.get(want) or self.draw(
                st.sampled_from(["float", "int", "bool", "str"]))
            options.append(self.check(ir.Tokens(view)))
        if want in (None, "str") and self.vocab_kind == "str" and self.coin(0.1):
            options.append(self.check(ir.Tokens("str")))
        options = [o for o in options if o is not None]
        if not options:      # cannot happen for the flavours used, but stay total
            return ir.Indices(), T.type_of(ir.Indices(), self.ctx)
        return options[self.pick(len(options))]

    def bool_leaf(self):
        """A boolean binding, or a source compared with a constant."""
        refs = self.refs(lambda t: flavour(t) == "bool")
        if refs and self.coin(0.5):
            return refs[self.pick(len(refs))]
        x, t = self.leaf(self.draw(st.sampled_from(["num", "str"])))
        c, _ = self.const(flavour(t))
        op = self.draw(st.sampled_from(sorted(ops.COMPARISONS)))
        if self.coin(0.5):
            x, c = c, x
        return self.check(ir.BinaryOp(op, x, c)) or self.check(ir.BinaryOp("!=", x, c))

    def operand(self, depth, want=None, const_ok=True):
        """An s-op or (sometimes) a constant of the wanted flavour."""
        if const_ok and self.coin(0.3):
            return self.const(want)
        return self.sop(depth - 1, want)

    def sop(self, depth, want=None, leaf_ok=True):
        """An s-op expression whose values have the wanted flavour."""
        if depth <= 0 or (leaf_ok and self.coin(0.25)):
            return self.leaf(want)
        makers = [self.arith, self.compare, self.unary, self.logic, self.cond, self.member,
                  self.lookup, self.call, self.numerical_aggregate, self.categorical_aggregate,
                  self.width]
        if self.drasp:
            makers += [self.harden, self.exists, self.soft_aggregate]
        for _ in range(3):
            made = makers[self.pick(len(makers))](depth, want)
            if made is not None and _fits(made[1], want):
                return made
        return self.leaf(want)

    def nonconst_pair(self, depth, want_left, want_right):
        left = self.operand(depth, want_left)
        right = self.operand(depth, want_right, const_ok=not _is_const(left[0]))
        if self.coin(0.5):
            return left, right
        return right, left

    def arith(self, depth, want=None):
        if want not in (None, "num", "str"):
            return None
        if want == "str" or (want is None and self.coin(0.1)):
            op = self.draw(st.sampled_from(["+", "*"]))
            if op == "+":
                (l, lt), (r, rt) = self.nonconst_pair(depth, "str", "str")
            else:
                l, lt = self.sop(depth - 1, "str")
                r, rt = ir.Const(self.draw(st.integers(0, 3))), None
        else:
            op = self.draw(st.sampled_from(["+", "-", "*", "/", "%", "^"]))
            if op == "^":
                l, lt = self.sop(depth - 1, "num")
                if lt.values is None or any(abs(v) > 50 for v in lt.values):
                    return None
                r = ir.Const(self.draw(st.sampled_from([0, 1, 2, 3, -1, 0.5])))
            else:
                (l, lt), (r, rt) = self.nonconst_pair(depth, "num", "num")
        return self.check(ir.BinaryOp(op, l, r))

    def compare(self, depth, want=None):
        if want not in (None, "bool"):
            return None
        op = self.draw(st.sampled_from(sorted(ops.COMPARISONS)))
        side = self.draw(st.sampled_from(["num", "str", "bool", None]))
        if side is None:
            op = self.draw(st.sampled_from(["==", "!="]))
        (l, _), (r, _) = self.nonconst_pair(max(depth, 1), side, side)
        return self.check(ir.BinaryOp(op, l, r))

    def unary(self, depth, want=None):
        if want == "str":
            return None
        if want == "bool" or (want is None and self.coin(0.3)):
            x, _ = self.sop(depth - 1, self.draw(st.sampled_from(["bool", "num", None])))
            return self.check(ir.UnaryOp("not", x))
        x, _ = self.sop(depth - 1, "num")
        return self.check(ir.UnaryOp(self.draw(st.sampled_from(["-", "+"])), x))

    def logic(self, depth, want=None):
        if want not in (None, "bool"):
            return None
        op = self.draw(st.sampled_from(["and", "or"]))
        (l, _), (r, _) = self.nonconst_pair(depth, "bool", "bool")
        return self.check(ir.BinaryOp(op, l, r))

    def cond(self, depth, want=None):
        c, _ = self.sop(depth - 1, "bool")
        branch = want if want is not None else self.draw(st.sampled_from(["num", "str", "bool"]))
        then, _ = self.operand(depth, branch)
        otherwise, _ = self.operand(depth, branch)
        return self.check(ir.Cond(c, then, otherwise))

    def member(self, depth, want=None):
        if want not in (None, "bool"):
            return None
        x, t = self.sop(depth - 1, None)
        basis = T.basis_of(t)
        pool = st.sampled_from(list(basis)) if basis else st.nothing()
        options = tuple(self.draw(st.lists(pool | atoms, max_size=4)))
        return self.check(ir.In(x, options, self.draw(st.booleans())))

    def lookup(self, depth, want=None):
        x, t = self.sop(depth - 1, None)
        basis = _small_basis(t, 24)
        if basis is None:
            return None
        keys = list(basis)
        extra = self.draw(st.lists(numbers | string_tokens, max_size=2))
        for e in extra:
            if all(e != k for k in keys):
                keys.append(e)
        keys = self.draw(st.permutations(keys))
        value_kind = want if want is not None else self.draw(
            st.sampled_from(["num", "str", "bool", None]))
        values = tuple(self.const(value_kind)[0].value for _ in keys)
        return self.check(ir.Lookup(tuple(keys), values, x))

    def call(self, depth, want=None):
        name = self.draw(st.sampled_from(["indicator", "round", "numerical", "abs", "str",
                                          "categorical"]))
        if name == "indicator":
            x, _ = self.sop(depth - 1, "bool")
        elif name in ("round", "abs", "numerical"):
            x, _ = self.sop(depth - 1, "num")
        else:
            x, _ = self.sop(depth - 1, None)
        return self.check(ir.Call(name, (x,)))

    def numerical_aggregate(self, depth, want=None):
        if want not in (None, "num"):
            return None
        sel, _ = self.selector(depth - 1)
        if self.coin(0.6):
            b, _ = self.sop(depth - 1, "bool")
            values = ir.Call("indicator", (b,))
        else:
            x, t = self.sop(depth - 1, "num")
            values = x if isinstance(t, T.Num) else ir.Call("numerical", (x,))
        default = self.draw(st.sampled_from([None, None, 0]))
        return self.check(ir.Aggregate(sel, values, default))

    def categorical_aggregate(self, depth, want=None):
        sel, _ = self.single_key_selector(depth - 1) if self.coin(0.85) else \
            self.selector(depth - 1)
        if self.coin(0.2):
            values, _ = self.const(want)
        else:
            values, t = self.sop(depth - 1, want)
            if isinstance(t, T.Num):
                return None
        default = None
        if self.coin(0.5):
            default = self.const(want or self.draw(st.sampled_from(["num", "str"])))[0].value
        return self.check(ir.Aggregate(sel, values, default))

    def width(self, depth, want=None):
        if want not in (None, "num"):
            return None
        sel, _ = self.selector(depth - 1)
        return self.check(ir.SelectorWidth(sel))

    # ------------------------------------------------------------ selectors

    def selector(self, depth):
        """A boolean selector (type sel)."""
        refs = self.refs(lambda t: isinstance(t, T.Sel))
        if refs and self.coin(0.3):
            return refs[self.pick(len(refs))]
        choice = self.pick(5) if depth > 0 else self.pick(2)
        made = None
        if choice == 0:
            made = self.select_compare(depth)
        elif choice == 1:
            made = self.select_lambda(depth)
        elif choice == 2:
            made = self.single_key_selector(depth)
        elif choice == 3:
            (l, _), (r, _) = self.selector(depth - 1), self.selector(depth - 1)
            kind = self.draw(st.sampled_from([ir.SelectAnd, ir.SelectOr]))
            made = self.check(kind(l, r))
        else:
            made = self.check(ir.SelectNot(self.selector(depth - 1)[0]))
        return made or self.check(ir.Select(ir.Const(1), ir.Const(1), ir.Compare("==")))

    def _sides(self, depth):
        side = self.draw(st.sampled_from(["num", "str", None]))
        keys = self.operand(depth, side)
        queries = self.operand(depth, side)
        return side, keys, queries

    def select_compare(self, depth):
        side, (keys, _), (queries, _) = self._sides(depth)
        ops_ = sorted(ops.COMPARISONS) if side is not None else ["==", "!="]
        return self.check(ir.Select(keys, queries, ir.Compare(self.draw(st.sampled_from(ops_)))))

    def select_lambda(self, depth):
        side, (keys, kt), (queries, qt) = self._sides(depth)
        with_queries = self.coin(0.85)
        params = ("k", "q") if with_queries else ("k",)
        kinds = {"k": flavour(kt), "q": flavour(qt)}
        body, _ = self.predicate_body(2, params, kinds)
        if isinstance(body, ir.BinaryOp) and body.op in ops.COMPARISONS and \
                isinstance(body.left, ir.Param) and isinstance(body.right, ir.Param) and \
                body.left.name != body.right.name:
            return None      # that is the plain comparison `k OP q`, a Compare
        node = ir.Select(keys, queries if with_queries else None, ir.Lambda(params, body))
        return self.check(node)

    def single_key_selector(self, depth):
        """A selector that picks at most one key per query: keys are the indices."""
        q, _ = self.operand(depth, "num")
        if self.coin(0.5):
            shift = self.draw(st.integers(-3, 3))
            body = ir.BinaryOp("==", ir.Param("k"), ir.BinaryOp("-", ir.Param("q"),
                                                                ir.Const(shift)))
            if shift == 0:
                body = ir.BinaryOp("==", ir.Param("k"), ir.BinaryOp("+", ir.Param("q"),
                                                                    ir.Const(1)))
            return self.check(ir.Select(ir.Indices(), ir.Indices(), ir.Lambda(("k", "q"), body)))
        made = self.check(ir.Select(ir.Indices(), q, ir.Compare("==")))
        if made is not None and self.coin(0.2):
            other, _ = self.selector(0)
            made = self.check(ir.SelectAnd(made[0], other)) or made
        return made

    # ------------------------------------------------------------ predicate bodies

    def predicate_body(self, depth, params, kinds, allow_const=True):
        """An expression over the predicate's parameters that is a boolean per pair
        (a bare constant only as the whole body: the elaborator folds constant operations)."""
        choice = self.pick(5 if allow_const else 4) if depth > 0 else 0
        if choice == 4:
            return ir.Const(self.draw(st.booleans())), T.BOOL
        if choice == 1:
            l, _ = self.predicate_body(depth - 1, params, kinds, False)
            r, _ = self.predicate_body(depth - 1, params, kinds, False)
            return ir.BinaryOp(self.draw(st.sampled_from(["and", "or"])), l, r), T.BOOL
        if choice == 2:
            inner, _ = self.predicate_body(depth - 1, params, kinds, False)
            return ir.UnaryOp("not", inner), T.BOOL
        if choice == 3:
            p = self.draw(st.sampled_from(params))
            options = tuple(self.draw(st.lists(atoms, max_size=3)))
            return ir.In(ir.Param(p), options, self.draw(st.booleans())), T.BOOL
        # a comparison of two parameter terms (at least one not a constant)
        p = self.draw(st.sampled_from(params))
        left = self.param_term(depth, p, kinds.get(p))
        other = self.draw(st.sampled_from(params))
        if self.coin(0.3):
            right = self.const(kinds.get(p))[0]
        else:
            right = self.param_term(depth, other, kinds.get(other))
        if self.coin(0.5):
            left, right = right, left
        op = self.draw(st.sampled_from(sorted(ops.COMPARISONS)))
        return ir.BinaryOp(op, left, right), T.BOOL

    def param_term(self, depth, name, kind):
        p = ir.Param(name)
        if kind == "num" and depth > 0 and self.coin(0.6):
            op = self.draw(st.sampled_from(["+", "-", "*", "%"]))
            c = self.draw(st.integers(1, 4))
            return ir.BinaryOp(op, p, ir.Const(c)) if self.coin(0.7) else \
                ir.BinaryOp(op, ir.Const(c), p)
        if depth > 0 and self.coin(0.15):
            function = "abs" if kind == "num" else self.draw(st.sampled_from(["str", "bool"]))
            return ir.Call(function, (p,))
        return p

    # ------------------------------------------------------------ D-RASP: scores, vectors, logits

    def score(self, depth):
        """A real-valued selector."""
        refs = self.refs(lambda t: isinstance(t, T.Score))
        if refs and self.coin(0.3):
            return refs[self.pick(len(refs))]
        choice = self.pick(3) if depth > 0 else 0
        if choice == 1:
            terms = []
            for _ in range(self.draw(st.integers(2, 3))):
                term = self.score(depth - 1) if self.coin(0.4) else self.selector(depth - 1)
                if isinstance(term[0], ir.ScoreSum):
                    term = self.selector(0)
                terms.append(term[0])
            made = self.check(ir.ScoreSum(tuple(terms)))
        elif choice == 2:
            factor = self.draw(small_floats)
            made = self.check(ir.ScoreScale(factor, self.selector(depth - 1)[0]))
        else:
            made = self.matrix_select(depth)
        return made or self.check(ir.ScoreSum((self.selector(0)[0], self.selector(0)[0])))

    def based(self, depth, limit=12):
        """A categorical s-op or vector with a small known basis (vector sides of select)."""
        for _ in range(3):
            if self.drasp and depth > 0 and self.coin(0.3):
                node, t = self.vector(depth - 1)
            else:
                node, t = self.sop(depth - 1, None)
            basis = _small_basis(t, limit)
            if basis is not None and not isinstance(t, T.Num):
                return node, t, basis
        t = T.type_of(ir.Tokens(), self.ctx)
        return ir.Tokens(), t, t.values

    def matrix(self, rows, cols):
        """An unnamed table over the given labels (the printer writes it inline, labelled)."""
        entries = self.draw(st.sampled_from([small_floats, table_numbers,
                                             st.integers(-9, 9).map(float)]))
        if cols is None:
            values = tuple(float(self.draw(entries)) for _ in rows)
        else:
            values = tuple(tuple(float(self.draw(entries)) for _ in cols) for _ in rows)
        return ir.Matrix(tuple(rows), None if cols is None else tuple(cols), values)

    def bias(self, labels):
        """An MLP bias: a vector, or a 1 × n matrix (both fit)."""
        if self.coin(0.25):
            return self.matrix(self.draw(distinct_labels(1, 1)), labels)
        return self.matrix(labels, None)

    def matrix_select(self, depth):
        keys, kt, kb = self.based(depth)
        if self.coin(0.2):
            return self.check(ir.Select(keys, None, self.matrix(kb, None)))
        queries, qt, qb = self.based(depth)
        return self.check(ir.Select(keys, queries, self.matrix(qb, kb)))

    def vector(self, depth):
        refs = self.refs(lambda t: isinstance(t, T.Vec))
        if refs and self.coin(0.4):
            return refs[self.pick(len(refs))]
        choice = self.pick(4) if depth > 0 else 0
        made = None
        if choice == 3 and self.coin(0.5):
            made = self.mlp(depth)
        if choice == 1:
            made = self.check(ir.Predict(self.draw(st.sampled_from(["softmax", "sigmoid"])),
                                         self.logits(depth - 1)[0]))
        elif choice == 2:
            v, t = self.vector(depth - 1)
            if self.coin(0.5):
                made = self.check(ir.Primitive("sharpen", (v,), (self.draw(st.integers(1, 4)),)))
            else:
                labels = self.draw(distinct_labels(1, 5))
                made = self.check(ir.Primitive("lookup", (v, self.matrix(t.basis, labels))))
        if made is None or not isinstance(made[1], T.Vec):
            sel, _ = self.score(depth - 1)
            values, _, _ = self.based(depth - 1)
            made = self.check(ir.Aggregate(sel, values))
        if made is None or not isinstance(made[1], T.Vec):
            sel = ir.ScoreSum((ir.Select(ir.Tokens(), ir.Tokens(), ir.Compare("==")),
                               ir.Select(ir.Indices(), ir.Indices(), ir.Compare("<="))))
            made = self.check(ir.Aggregate(sel, ir.Tokens()))
        return made

    def mlp(self, depth):
        """An opaque MLP over one or two inputs, its tables shaped to the inputs' widths."""
        inputs, width = [], 0
        for _ in range(self.draw(st.integers(1, 2))):
            if self.coin(0.3):
                node, t = self.sop(depth - 1, "num")
                if not isinstance(t, T.Num):
                    node, t = ir.Call("numerical", (node,)), T.Num(None)
                inputs.append(node)
                width += 1
            else:
                node, t, basis = self.based(depth - 1)
                inputs.append(node)
                width += len(basis)
        hidden = self.draw(distinct_labels(1, 4))
        if self.coin(0.15):     # labels equal as dict keys: the positional form
            hidden = [1, True, 1.0][:self.draw(st.integers(2, 3))]
        out = self.draw(distinct_labels(1, 3))
        # W_in's rows are the inputs' entries in order: any distinct labels do
        rows = range(width) if self.coin(0.7) else [f"e{i}" for i in range(width)]
        node = ir.Mlp(tuple(inputs), self.matrix(rows, hidden), self.bias(hidden),
                      self.matrix(hidden, out), self.bias(out))
        return self.check(node)

    def soft_aggregate(self, depth, want=None):
        if want not in (None, "num"):
            return None
        x, t = self.sop(depth - 1, "num")
        values = x if isinstance(t, T.Num) else ir.Call("numerical", (x,))
        return self.check(ir.Aggregate(self.score(depth - 1)[0], values))

    def harden(self, depth, want=None):
        if not self.drasp:
            return None
        return self.check(ir.Primitive("harden", (self.vector(depth - 1)[0],)))

    def exists(self, depth, want=None):
        if want not in (None, "bool"):
            return None
        v, t = self.vector(depth - 1)
        value = self.draw(st.sampled_from(list(t.basis)))
        threshold = self.draw(st.sampled_from([0.1, 0.5, 0.25]))
        return self.check(ir.Primitive("exists", (v,), (value, threshold)))

    def logits(self, depth):
        refs = self.refs(lambda t: isinstance(t, T.Logits))
        if refs and self.coin(0.3):
            return refs[self.pick(len(refs))]
        choice = self.pick(3) if depth > 0 else self.pick(2)
        if choice == 2:
            terms = []
            for _ in range(self.draw(st.integers(2, 3))):
                term = self.logits(depth - 1)[0]
                terms.extend(term.terms if isinstance(term, ir.LogitsSum) else (term,))
            made = self.check(ir.LogitsSum(tuple(terms)))
        elif choice == 1:
            if self.coin(0.5):
                pred = self.matrix(self.vocab, None)
            else:
                pred = ir.Lambda(("out",), self.predicate_body(1, ("out",),
                                                               {"out": self.vocab_kind})[0])
            made = self.check(ir.Project(None, pred))
        else:
            x, t, basis = self.based(depth)
            if self.coin(0.5):
                pred = self.matrix(basis, self.vocab)
            else:
                body = ir.BinaryOp(self.draw(st.sampled_from(["==", "!="])), ir.Param("inp"),
                                   ir.Param("out"))
                if self.coin(0.3):
                    body = self.predicate_body(1, ("inp", "out"),
                                               {"inp": flavour(T.Cat(basis)),
                                                "out": self.vocab_kind})[0]
                pred = ir.Lambda(("inp", "out"), body)
            made = self.check(ir.Project(x, pred))
        return made or self.check(ir.Project(ir.Tokens(), ir.Lambda(
            ("inp", "out"), ir.BinaryOp("==", ir.Param("inp"), ir.Param("out")))))

    # ------------------------------------------------------------ bindings

    def binding_value(self):
        """A value worth a binding of its own: never a bare constant or source."""
        kinds = ["sop"] * 6 + ["sel"] * 2 + (["score", "vec", "logits"] if self.drasp else [])
        kind = kinds[self.pick(len(kinds))]
        depth = self.draw(st.integers(1, 3))
        if kind == "sel":
            made = self.selector(depth)
        elif kind == "score":
            made = self.score(depth)
        elif kind == "vec":
            made = self.vector(depth)
        elif kind == "logits":
            made = self.logits(depth)
        else:
            made = self.sop(depth, None, leaf_ok=False)
        node = made[0]
        if isinstance(node, (ir.Const, ir.Tokens, ir.Indices)):
            made = self.check(ir.BinaryOp("==", node, ir.Const(0))) or \
                self.check(ir.Call("numerical", (ir.Indices(),)))
        return made


# ---------------------------------------------------------------- programs


@st.composite
def programs(draw, drasp: bool | None = None, max_bindings: int = 8):
    """A well-typed IR program (see the module docstring)."""
    vocab = draw(vocabularies())
    maxlen = draw(st.integers(4, 12))
    causal = draw(st.booleans())
    bos = draw(st.none() | st.sampled_from(vocab))
    vocab_name = draw(st.sampled_from([None, None, None, "V", "Alphabet"]))
    hard_scale = draw(st.sampled_from([1e4, 1e4, 1e4, 100.0, 1e3]))
    compat = draw(st.sampled_from([None] * 7 + ["rasp0.1"]))
    if drasp is None:
        drasp = draw(st.booleans())
    b = _Builder(draw, vocab, maxlen, drasp)
    taken = set(FORBIDDEN_NAMES) | ({vocab_name} if vocab_name else set())
    bindings = []
    for i in range(draw(st.integers(1, max_bindings))):
        name = draw(binding_names)
        if name in taken:
            name = f"b{i}_"
            while name in taken:
                name += "_"
        taken.add(name)
        node, t = b.binding_value()
        bindings.append(ir.Binding(name, node))
        b.ctx.bindings[name] = t
    outputs = [ir.Ref(bd.name) for bd in bindings
               if not T.is_selector(b.ctx.bindings[bd.name])]
    if outputs and draw(st.integers(0, 3)) > 0:
        output = outputs[-1] if draw(st.booleans()) else draw(st.sampled_from(outputs))
    else:
        output = b.sop(2, None)[0]
        if isinstance(output, ir.Const):
            output = ir.Indices()
    expects = []
    for _ in range(draw(st.integers(0, 2)) if draw(st.integers(0, 4)) == 0 else 0):
        subject = draw(st.sampled_from([output] + [ir.Ref(bd.name) for bd in bindings]))
        seq = tuple(draw(st.lists(st.sampled_from(vocab), max_size=4)))
        expected = tuple(draw(st.lists(st.sampled_from(vocab) | numbers, max_size=4)))
        expects.append(ir.Expect(subject, seq, expected))
    program = ir.Program(bindings=tuple(bindings), output=output, vocab=vocab,
                         vocab_name=vocab_name, maxlen=maxlen, causal=causal, bos=bos,
                         hard_scale=hard_scale, compat=compat, expects=tuple(expects))
    _, problems = T.infer(program)
    assert not problems, f"the strategy drew an ill-typed program: {problems[0].message}"
    return program


@st.composite
def inputs_for(draw, program: ir.Program, max_count: int = 3):
    """A few valid input sequences for `program` (tokens from @vocab, BOS first if declared)."""
    vocab = list(program.vocab)
    out = []
    for _ in range(draw(st.integers(1, max_count))):
        if program.bos is not None:
            rest = draw(st.lists(st.sampled_from(vocab), max_size=program.maxlen - 1))
            out.append([program.bos] + rest)
        else:
            out.append(draw(st.lists(st.sampled_from(vocab), min_size=1,
                                     max_size=program.maxlen)))
    return out
