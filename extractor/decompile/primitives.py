"""The primitive library: named replacements for the tables of a path program.

The extractor replaces each table of a pruned program, where it can, by a primitive whose
printed form says exactly what the table holds (docs/extractor.md, Primitives and replacement; the
reference library mislabels several):

- `AttentionPrimitive`: a 0/1 table over (query basis × key basis) (kind "qk") or a 0/1 vector
  over the key basis (kind "k") standing for one score term. It prints as the `op=` predicate
  of a select, which the interpreter evaluates on the bases and lifts by @hard_scale.
- `LogitPrimitive`: the same for a projection table (input basis × outputs, kind "table") or
  the bias over the outputs (kind "bias"); it prints as the `op=` of a project.
- `MlpPrimitive`: an element-wise function of one variable (two for `product`), printed as a
  call of a builtin (`harden`, `sharpen`, `exists`, `is_pure`, `balance`, `diff`, `erase`,
  `product`) or, for `no_op`, as nothing at all. Its outputs are computed by the functions
  the interpreter evaluates those builtins with (rasp_ir/primitives.py), so they cannot drift.

Each table is computed from a plain Python rule over the basis values; tests/test_primitives.py
checks that the interpreter, reading the printed label, computes the same table (times
@hard_scale) and the same MLP outputs. Lists are in simplicity order, simplest first, so a
greedy search that accepts the first good candidate prefers deleting a term to keeping it.

Left out on purpose: the reference's `gradually_smaller` / `gradually_bigger` ramps (a key
score growing or shrinking with the key's index). A select's predicate is a truth value per
(query, key) pair, so a ramp has no label in the language other than its matrix; on positions
under @causal its effect at scale 1e4 is `last` (= `k == q`, the query itself) and `first`
(`k == 0`), which are here.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from typing import ClassVar

import numpy as np
from attrs import field, frozen

from extractor.tasks.vocabulary import BOS, EOS, PAD, SEP
from rasp_ir import nodes as ir
from rasp_ir import ops
from rasp_ir import primitives as semantics
from rasp_ir.printer import expr
from rasp_ir.printer import predicate as print_predicate


@frozen
class Specials:
    """The basis values that are the special tokens (extractor/tasks/vocabulary.py's names)."""
    bos: str = BOS
    sep: str = SEP
    eos: str = EOS
    pad: str = PAD

    @property
    def values(self) -> tuple:
        return (self.bos, self.sep, self.eos, self.pad)


SPECIALS = Specials()

# ---------------------------------------------------------------- tables from rules


def _is_positions(basis) -> bool:
    """Integer values (not booleans): positions, or anything with position arithmetic."""
    return all(isinstance(v, int) and not isinstance(v, bool) for v in basis)


def _typed(basis) -> tuple | None:
    # 1 == True and hash(1) == hash(True): key caches by (type, value)
    return None if basis is None else tuple((type(v), v) for v in basis)


_TABLES: dict = {}


@frozen(eq=False)
class _Table:
    """A predicate over (row, column) basis values, or over the column value alone.

    `rule(row, col, special) -> bool` is the truth in Python (row is None for a vector);
    `body(special) -> ir.Node` is the same predicate as an IR expression over Params.
    `positions`: the rule applies only to integer bases (True: both; "rows" or "cols": that
    side only, for a rule that reads positions on one side). `uniform`: the all-zero table, the
    only one whose table may be all zeros (any other is left out where it selects nothing).
    """

    ROW: ClassVar[str]
    COL: ClassVar[str]
    VECTOR: ClassVar[str]      # the kind without rows

    name: str
    kind: str
    token_only: bool
    rule: Callable = field(repr=False)
    body: Callable = field(repr=False)
    positions: bool | str = False
    uniform: bool = False
    special_rows: bool = False
    numeric: bool = False      # rule and body give numbers, used as written (not lifted)
    none_rows: bool = False    # it names the row value None: applies only where rows hold it

    def matrix(self, row_basis: tuple | None, col_basis: tuple,
               special: Specials = SPECIALS) -> np.ndarray | None:
        """The 0/1 table (len(row_basis), len(col_basis)), or a vector over `col_basis` for the
        row-less kind; None where the primitive does not apply to these bases. Read-only."""
        if (row_basis is None) != (self.kind == self.VECTOR):
            raise ValueError(f"{self.name} is a {self.kind} primitive: "
                             f"{'no' if self.kind == self.VECTOR else 'a'} row basis expected")
        # names are unique per class and kind (a combination's name names both parts)
        key = (type(self).__name__, self.name, self.kind, _typed(row_basis), _typed(col_basis),
               special)
        if key not in _TABLES:
            if len(_TABLES) > 4096:
                _TABLES.clear()
            _TABLES[key] = self._tabulate(row_basis, col_basis, special)
        return _TABLES[key]

    def _tabulate(self, rows, cols, special):
        if self.positions is True and not (_is_positions(cols) and
                                           (rows is None or _is_positions(rows))):
            return None
        if self.positions in ("rows", "cols") and not _is_positions(
                cols if self.positions == "cols" or rows is None else rows):
            return None
        if self.special_rows and not any(r in special.values for r in rows):
            return None
        if self.none_rows and None not in rows:
            return None
        value = float if self.numeric else bool
        try:
            if rows is None:
                table = np.array([value(self.rule(None, c, special)) for c in cols], dtype=float)
            else:
                table = np.array([[value(self.rule(r, c, special)) for c in cols] for r in rows],
                                 dtype=float).reshape(len(rows), len(cols))
        except TypeError:           # e.g. `q - 1` on strings: the label would fail to run
            return None
        if not self.uniform and not table.any():
            return None
        table.setflags(write=False)
        return table

    def scores(self, row_basis: tuple | None, col_basis: tuple, hard_scale: float,
               special: Specials = SPECIALS) -> np.ndarray | None:
        """What the interpreter computes from the label: a numeric table as it is, a 0/1
        table times @hard_scale."""
        m = self.matrix(row_basis, col_basis, special)
        return None if m is None else m * (1.0 if self.numeric else hard_scale)

    def predicate(self, special: Specials = SPECIALS) -> ir.Node:
        """The `op=` of the select or project, as the parser builds it from `label()`."""
        params = (self.COL,) if self.kind == self.VECTOR else self._params()
        return ir.Lambda(params, self.body(special))

    def _params(self) -> tuple:
        return (self.ROW, self.COL)

    def label(self, special: Specials = SPECIALS) -> str:
        """The printed `op=` text, e.g. `(k == q - 1)`."""
        return print_predicate(self.predicate(special))


def _param(name):
    return ir.Param(name)


def _const(value):
    return ir.Const(value)


def _eq(left, right):
    return ir.BinaryOp("==", left, right)


@frozen(eq=False)
class AttentionPrimitive(_Table):
    """A replacement for one score term of a head: kind "qk", a 0/1 table over (query basis ×
    key basis), or kind "k", a 0/1 vector over the key basis (a query-independent term).
    `token_only`: it names a special token, so it applies only where the key basis holds it.
    The interpreter scores the term `q · matrix · kᵀ × @hard_scale`."""

    ROW, COL, VECTOR = "q", "k", "k"

    def _params(self) -> tuple:
        return ("k", "q")      # the parser's order for select

    def predicate(self, special: Specials = SPECIALS) -> ir.Node:
        node = super().predicate(special)
        body = node.body
        # the parser reads `k OP q` as the plain comparison predicate
        if isinstance(body, ir.BinaryOp) and body.op in ops.COMPARISONS and \
                isinstance(body.left, ir.Param) and isinstance(body.right, ir.Param) and \
                (body.left.name, body.right.name) == ("k", "q"):
            return ir.Compare(body.op)
        return node

    def select(self, keys: ir.Node, queries: ir.Node | None = None,
               special: Specials = SPECIALS) -> ir.Select:
        """The select node of this primitive reading `queries` and `keys`."""
        if (queries is None) != (self.kind == "k"):
            raise ValueError(f"{self.name} is a {self.kind} primitive")
        return ir.Select(keys, queries, self.predicate(special))


@frozen(eq=False)
class LogitPrimitive(_Table):
    """A replacement for one logit term: kind "table", a 0/1 table over (input basis ×
    outputs), or kind "bias", a 0/1 vector over the outputs. The interpreter computes
    `x · matrix × @hard_scale` (the bias: `matrix × @hard_scale`)."""

    ROW, COL, VECTOR = "inp", "out", "bias"

    def project(self, operand: ir.Node | None = None,
                special: Specials = SPECIALS) -> ir.Project:
        """The project node of this primitive reading `operand` (None for the bias)."""
        if (operand is None) != (self.kind == "bias"):
            raise ValueError(f"{self.name} is a {self.kind} primitive")
        return ir.Project(operand, self.predicate(special))


def _special_key(which):
    return lambda q, k, sp: k == getattr(sp, which)


def _special_body(param, which):
    return lambda sp: _eq(_param(param), _const(getattr(sp, which)))


def _offset(n):
    return _eq(_param("k"), ir.BinaryOp("-", _param("q"), _const(n)))


def _same_mod(n):
    return _eq(ir.BinaryOp("%", _param("k"), _const(n)), ir.BinaryOp("%", _param("q"), _const(n)))


def _attention(name, kind, rule, body, token_only=False, **flags):
    return AttentionPrimitive(name, kind, token_only, rule, body, **flags)


def _uniform(kind):
    return _attention("uniform", kind, lambda q, k, sp: False, lambda sp: _const(False),
                      uniform=True)


def _to_special(kind, which):
    return _attention(f"to_{which}", kind, _special_key(which), _special_body("k", which),
                      token_only=True)


def _first(kind):
    return _attention("first", kind, lambda q, k, sp: k == 0,
                      lambda sp: _eq(_param("k"), _const(0)), positions=True)


def attention_primitives() -> list[AttentionPrimitive]:
    """Candidates for a (query × key) score table, simplest first (name: label, 1 where):

    - uniform: `False`, nowhere: the term adds nothing (delete it);
    - to_bos, to_sep, to_eos: `(k == "<bos>")` …, the key is that token, whatever the query;
    - first: `(k == 0)`, the key is 0 (on positions: the first position);
    - diag: `(k == q)`, key and query values are equal (on positions: the query itself,
      which under @causal is also the last visible key: the reference's `last`);
    - offset1, offset2, offset3: `(k == q - 1)` …, the key is n below the query (on
      positions: n tokens back; offset3 is the reference's `third_diag`, printed `k==q-2`);
    - same_parity: `(k % 2 == q % 2)`, key and query have the same parity. Keys after the
      query are included: on positions under @causal they are masked anyway, so this is the
      reference's `every_second` (which excluded them and printed `k%2==q%2==0`);
    - same_mod3: `(k % 3 == q % 3)`, the same modulo 3 (`every_third`);
    - diag+special:to_bos: `(k == "<bos>" if q in [specials] else k == q)`, an induction
      head whose special queries (the `<sep>` that starts a copy) read the `<bos>` key.

    `first`, the offsets and the moduli apply to integer bases only (not booleans)."""
    return [
        _uniform("qk"),
        _to_special("qk", "bos"), _to_special("qk", "sep"), _to_special("qk", "eos"),
        _first("qk"),
        _DIAG,
        *[_attention(f"offset{n}", "qk", lambda q, k, sp, n=n: k == q - n,
                     lambda sp, n=n: _offset(n), positions=True) for n in (1, 2, 3)],
        _attention("same_parity", "qk", lambda q, k, sp: k % 2 == q % 2,
                   lambda sp: _same_mod(2), positions=True),
        _attention("same_mod3", "qk", lambda q, k, sp: k % 3 == q % 3,
                   lambda sp: _same_mod(3), positions=True),
        # an induction head: the key equal to the query, and from a special query (the
        # <sep> that starts a copy) the key that is <bos>
        with_special_rows(_DIAG, _to_special("qk", "bos")),
    ]


_DIAG = _attention("diag", "qk", lambda q, k, sp: k == q,
                   lambda sp: _eq(_param("k"), _param("q")))


def key_primitives() -> list[AttentionPrimitive]:
    """Candidates for a query-independent score vector over the key basis, simplest first:
    uniform (`False`), to_bos / to_sep / to_eos (`(k == "<bos>")` …), first (`(k == 0)`,
    integer bases only)."""
    return [_uniform("k"), _to_special("k", "bos"), _to_special("k", "sep"),
            _to_special("k", "eos"), _first("k")]


def with_special_rows(main: AttentionPrimitive | LogitPrimitive,
                      special_rows: AttentionPrimitive | LogitPrimitive):
    """`main`, with the rows of the special query (or input) values taken from
    `special_rows` (the reference's `special_op`). Label: `(S if q in [specials] else M)`.
    Applies only where the row basis holds a special value."""
    if main.kind == main.VECTOR or special_rows.kind != main.kind or type(main) is not \
            type(special_rows):
        raise ValueError("special rows combine two primitives of the same kind with rows")
    row = main.ROW

    if main.numeric != special_rows.numeric:
        # a truth value inside a numeric op counts 1, not @hard_scale: the halves would not
        # be on one scale
        raise ValueError("special rows combine two numeric or two 0/1 primitives")

    def rule(r, c, sp):
        return (special_rows if r in sp.values else main).rule(r, c, sp)

    def body(sp):
        return ir.Cond(ir.In(_param(row), sp.values), special_rows.body(sp), main.body(sp))

    return type(main)(f"{main.name}+special:{special_rows.name}", main.kind,
                      main.token_only or special_rows.token_only, rule, body,
                      special_rows=True, numeric=main.numeric)


def logit_primitives() -> list[LogitPrimitive]:
    """Candidates for a projection table (input basis × outputs), simplest first: zeros
    (`False`), to_eos (`(out == "<eos>")`: every input row votes for <eos>), to_bos
    (`(out == "<bos>")`), diag with None voting for `<eos>` (where the inputs hold None),
    diag (`(inp == out)`: each input value votes for the same output), and diag with the
    special inputs voting for `<eos>` (a copy that ends)."""
    return [
        LogitPrimitive("zeros", "table", False, lambda i, o, sp: False,
                       lambda sp: _const(False), uniform=True),
        LogitPrimitive("to_eos", "table", True, lambda i, o, sp: o == sp.eos,
                       _special_body("out", "eos")),
        LogitPrimitive("to_bos", "table", True, lambda i, o, sp: o == sp.bos,
                       _special_body("out", "bos")),
        # each value votes for itself and None (nothing left: a sort that has written its
        # largest number, least_above's None) for <eos>; before the plain diagonal, which a
        # bias for <eos> would otherwise complete only through a tie at @hard_scale
        LogitPrimitive("diag+none:to_eos", "table", True,
                       lambda i, o, sp: o == sp.eos if i is None else i == o,
                       lambda sp: ir.Cond(_eq(_param("inp"), _const(None)),
                                          _eq(_param("out"), _const(sp.eos)),
                                          _eq(_param("inp"), _param("out"))), none_rows=True),
        _LOGIT_DIAG,
        # a copy that ends: each input votes for itself, a special input (the <sep> a copy
        # reaches at its end) for <eos>
        with_special_rows(_LOGIT_DIAG, LogitPrimitive(
            "to_eos", "table", True, lambda i, o, sp: o == sp.eos, _special_body("out", "eos"))),
    ]


_LOGIT_DIAG = LogitPrimitive("diag", "table", False, lambda i, o, sp: i == o,
                             lambda sp: _eq(_param("inp"), _param("out")))


def bias_primitives() -> list[LogitPrimitive]:
    """Candidates for the constant logit vector, simplest first: zeros (`False`), to_eos
    (`(out == "<eos>")`), to_bos (`(out == "<bos>")`)."""
    return [
        LogitPrimitive("zeros", "bias", False, lambda i, o, sp: False,
                       lambda sp: _const(False), uniform=True),
        LogitPrimitive("to_eos", "bias", True, lambda i, o, sp: o == sp.eos,
                       _special_body("out", "eos")),
        LogitPrimitive("to_bos", "bias", True, lambda i, o, sp: o == sp.bos,
                       _special_body("out", "bos")),
    ]


# ---------------------------------------------------------------- primitives over positions
#
# A table over positions (a key score over `indices`, a projection of `indices`) is matched
# against 0/1 predicates over the position, with parameters read off the table itself. Each
# is a printable predicate the interpreter lifts by @hard_scale, like the primitives above.
# Linear functions of the position are numeric ops (`op=(0.25 * k)`, docs/language.md): their
# tables are the numbers as written, not truth values lifted by @hard_scale. Left out: anything
# over `length`, which an op (a table over the two bases) cannot read.

MODULI = (2, 3, 4)


def _op(op, left, right):
    return ir.BinaryOp(op, left, right)


def _key_rule(op, c):
    """`k OP c` on the key alone, in Python."""
    return lambda q, k, sp: ops.COMPARE[op](k, c)


def _key_body(param, op, c):
    return lambda sp: _op(op, _param(param), _const(c))


def _mod_rule(m, r):
    return lambda q, k, sp: k % m == r


def _mod_body(param, m, r):
    return lambda sp: _eq(_op("%", _param(param), _const(m)), _const(r))


def readable(x: float) -> float:
    """`x` to two significant digits: a constant a reader takes in at a glance."""
    return float(f"{x:.2g}")


def _slope(basis: tuple, v: np.ndarray) -> float:
    """The least-squares slope of `v` over the positions `basis`, readable; 0.0 for fewer
    than three positions (a line through two points says nothing)."""
    if len(basis) < 3:
        return 0.0
    return readable(float(np.polyfit(np.asarray(basis, dtype=float), v, 1)[0]))


def _line(o, slope: float, offset: float):
    """`(out == o) * (slope * inp + offset)` as an IR expression (`(out == o) * offset`
    without a slope)."""
    if not slope:
        return _op("*", _eq(_param("out"), _const(o)), _const(offset))
    inner = _op("*", _const(slope), _param("inp"))
    if offset:
        inner = _op("+" if offset > 0 else "-", inner, _const(abs(offset)))
    return _op("*", _eq(_param("out"), _const(o)), inner)


def _jump(v: np.ndarray) -> tuple[int, bool] | None:
    """(c, up): where consecutive entries of `v` differ most, c the first index after the
    jump and `up` whether the entries from c on are the larger; None for fewer than 2."""
    if len(v) < 2:
        return None
    d = np.diff(v)
    j = int(np.argmax(np.abs(d)))
    return j + 1, bool(d[j] > 0)


def _best_residue(v: np.ndarray, m: int) -> int | None:
    """The residue r of `k % m == r` whose keys score highest above the others in `v`."""
    k = np.arange(len(v))
    gaps = [v[k % m == r].mean() - v[k % m != r].mean() for r in range(m)
            if (k % m == r).any() and (k % m != r).any()]
    return int(np.argmax(gaps)) if gaps else None


def key_profile(values, rows: tuple | None, cols: tuple) -> np.ndarray:
    """The query-independent part of a score table over position keys: the vector itself, or
    each key's mean over the query rows (over queries at or after the key when the queries
    are positions too, the rows where @causal lets the key be seen)."""
    m = np.asarray(values, dtype=float)
    if rows is None:
        return m
    if _is_positions(rows) and _is_positions(cols):
        visible = np.asarray(rows)[:, None] >= np.asarray(cols)[None, :]
        counts = visible.sum(0)
        return np.where(counts > 0, (m * visible).sum(0) / np.maximum(counts, 1), m.mean(0))
    return m.mean(0)


def _key_family(kind, profile, cols, param, make, flags) -> list:
    """`param == c` at the profile's maximum, `param < c` / `param >= c` at its largest jump,
    and `param % m == r` for m in MODULI with the best-scoring residue, simplest first;
    `make(name, kind, rule, body, **flags)` builds one."""
    v, basis = np.asarray(profile, dtype=float), tuple(cols)
    found = []
    top = basis[int(np.argmax(v))]
    if top != 0:           # `k == 0` is `first`, already in the library
        found.append(make(f"at{top}", kind, _key_rule("==", top), _key_body(param, "==", top),
                          **flags))
    jump = _jump(v)
    if jump is not None:
        c, up = basis[jump[0]], jump[1]
        op = ">=" if up else "<"
        found.append(make(f"{'from' if up else 'before'}{c}", kind, _key_rule(op, c),
                          _key_body(param, op, c), **flags))
    slope = _slope(basis, v)
    if slope:
        found.append(make(f"ramp{slope}", kind, lambda q, k, sp, s=slope: s * k,
                          lambda sp, s=slope: _op("*", _const(s), _param(param)),
                          **flags, numeric=True))
    if basis == tuple(range(len(basis))):     # residues by index: the basis is 0..n-1
        for m in MODULI:
            r = _best_residue(v, m)
            if r is not None:
                found.append(make(f"mod{m}_{r}", kind, _mod_rule(m, r), _mod_body(param, m, r),
                                  **flags))
    return found


def position_key_primitives(values, cols: tuple) -> list[AttentionPrimitive]:
    """Candidates for a query-independent score vector over position keys (kind "k"), with
    parameters read from the vector `values`, simplest first (label, 1 where):

    - at{c}: `(k == c)`, the key at position c (the vector's maximum; c = 0 is `first`);
    - before{c} / from{c}: `(k < c)` or `(k >= c)`, the side of the vector's largest jump
      between consecutive positions that scores higher;
    - mod{m}_{r}: `(k % m == r)` for m = 2, 3, 4, r the residue scoring highest.

    Empty where the key basis is not positions."""
    if not _is_positions(cols):
        return []
    return _key_family("k", values, cols, "k",
                       lambda n, kind, rule, body, **f: _attention(n, kind, rule, body, **f),
                       {"positions": True})


def position_attention_primitives(values, rows: tuple, cols: tuple) -> list[AttentionPrimitive]:
    """Candidates for a (query × key) score table whose keys are positions, with parameters
    read from the table `values`, simplest first:

    - on any query basis, the query-independent ones of `position_key_primitives` (a
      predicate over `k` alone, the same for every query), fitted to `key_profile`: a term
      that depends on the query alone is a constant per row, which softmax ignores, so
      deleting it covers that case;
    - where the queries are positions too: `(k < q)`, every earlier key and not the query
      itself; `(k <= q)`, every visible key (without @causal: the keys up to the query); and
      `(k == q - c)` for the offset c > 3 whose diagonal scores highest (1 … 3 are in
      `attention_primitives`)."""
    if not _is_positions(cols):
        return []
    found = []
    if _is_positions(rows):
        found += [_attention("earlier", "qk", lambda q, k, sp: k < q,
                             lambda sp: _op("<", _param("k"), _param("q")), positions=True),
                  _attention("visible", "qk", lambda q, k, sp: k <= q,
                             lambda sp: _op("<=", _param("k"), _param("q")), positions=True)]
        c = _best_offset(np.asarray(values, dtype=float), rows, cols)
        if c is not None and c > 3:
            found.append(_attention(f"offset{c}", "qk", lambda q, k, sp, n=c: k == q - n,
                                    lambda sp, n=c: _offset(n), positions=True))
    found += _key_family("qk", key_profile(values, rows, cols), cols, "k",
                         lambda n, kind, rule, body, **f: _attention(f"key_{n}", kind, rule,
                                                                     body, **f),
                         {"positions": "cols"})
    return found


def _best_offset(m: np.ndarray, rows: tuple, cols: tuple) -> int | None:
    """The offset c ≥ 0 whose entries (q, q - c) score highest above their row's visible
    mean, over offsets seen by at least 4 queries."""
    q, k = np.asarray(rows)[:, None], np.asarray(cols)[None, :]
    visible = k <= q
    if not visible.any():
        return None
    row_mean = (m * visible).sum(1, keepdims=True) / np.maximum(visible.sum(1, keepdims=True), 1)
    lift = m - row_mean
    best, gain = None, -np.inf
    for c in range(int(np.max(rows)) + 1):
        on = (k == q - c)
        if on.sum() >= 4 and lift[on].mean() > gain:
            best, gain = c, float(lift[on].mean())
    return best


MAX_VOTERS = 16           # the most rows a table of votes is read over (a route's classes)


def vote_logit_primitives(values, rows: tuple, cols: tuple) -> list[LogitPrimitive]:
    """Candidates for a projection of a variable with a few values (a route's classes, a
    boolean) onto the outputs: `(out == {r: v, …}[inp])`, each row voting for one output or
    none. First only the rows whose largest entry stands out (above the row's median by at
    least half as much as the most outstanding row's), then every row for its largest."""
    if rows is None or not 2 <= len(rows) <= MAX_VOTERS or None in rows:
        return []
    m = np.asarray(values, dtype=float).reshape(len(rows), len(cols))
    top = m.argmax(1)
    strength = m.max(1) - np.median(m, 1)
    if strength.max() <= 0:
        return []
    found, seen = [], set()
    for keep in (strength >= 0.5 * strength.max(), np.ones(len(rows), dtype=bool)):
        votes = tuple(cols[top[i]] if keep[i] else None for i in range(len(rows)))
        if votes in seen:
            continue
        seen.add(votes)
        table = dict(zip(rows, votes))
        found.append(LogitPrimitive(
            f"votes{hash((tuple(rows), votes))}", "table", False,
            lambda i, o, sp, table=table: table.get(i) is not None and o == table.get(i),
            lambda sp, votes=votes: _eq(_param("out"), ir.Lookup(tuple(rows), votes,
                                                                _param("inp")))))
    return found


def silent_none(primitive: LogitPrimitive) -> LogitPrimitive:
    """`primitive` over rows that also hold None, None voting for nothing: a routed value's
    line (`x if route == k else None`) is None wherever another route is taken. Label:
    `(False if inp == None else …)`."""
    return LogitPrimitive(
        f"{primitive.name}+none:silent", primitive.kind, primitive.token_only,
        lambda i, o, sp: False if i is None else primitive.rule(i, o, sp),
        lambda sp: ir.Cond(_eq(_param("inp"), _const(None)), _const(False),
                           primitive.body(sp)),
        positions=primitive.positions, uniform=primitive.uniform,
        special_rows=primitive.special_rows, numeric=primitive.numeric)


def position_logit_primitives(values, rows: tuple, cols: tuple) -> list[LogitPrimitive]:
    """Candidates for a projection of positions (input basis positions × outputs), with
    parameters read from the table `values`, simplest first (o an output, label, 1 where):

    - every{o}: `(out == o)`, a vote for o at every position (o the column with the largest
      mean): a constant;
    - then for the output o whose column varies most: `(out == o and inp == c)` at the
      column's maximum, `(out == o and inp < c)` or `(out == o and inp >= c)` on the higher
      side of its largest jump, `(out == o and inp % m == r)` for m = 2, 3, 4.

    A predicate can only add @hard_scale where it holds, so each names where a column is
    high. Empty where the input basis is not positions."""
    if not _is_positions(rows) or not len(cols):
        return []
    m = np.asarray(values, dtype=float).reshape(len(rows), len(cols))
    found = []
    best = cols[int(np.argmax(m.mean(0)))]
    found.append(LogitPrimitive(f"every{best}", "table", False,
                                lambda i, o, sp, b=best: o == b,
                                lambda sp, b=best: _eq(_param("out"), _const(b))))
    o = cols[int(np.argmax(np.ptp(m, axis=0)))]

    def make(name, kind, rule, body, **flags):
        return LogitPrimitive(
            f"{name}:{o}", kind, False,
            lambda i, out, sp, rule=rule: out == o and rule(None, i, sp),
            lambda sp, body=body: _op("and", _eq(_param("out"), _const(o)), body(sp)), **flags)

    found += [p for p in _key_family("table", m[:, cols.index(o)], rows, "inp", make,
                                     {"positions": "rows"}) if not p.numeric]
    # every column as a line in the position: the projection a position embedding read
    # through the unembedding often is (a constant per output where the slope rounds to 0)
    lines, scale = [], float(np.abs(m).max()) or 1.0
    for j, out in enumerate(cols):
        slope, offset = np.polyfit(np.asarray(rows, dtype=float), m[:, j], 1) \
            if len(rows) >= 3 else (0.0, float(m[:, j].mean()))
        # a hundredth of the table's largest entry, over all positions, is no slope
        slope = readable(float(slope)) if abs(slope) * len(rows) > 0.01 * scale else 0.0
        offset = readable(float(offset)) if abs(offset) > 0.01 * scale else 0.0
        if slope or offset:
            lines.append((out, slope, offset))
    if lines and any(slope for _, slope, _ in lines):
        def rule(i, out, sp, lines=tuple(lines)):
            return sum(s * i + c for o2, s, c in lines if o2 == out)

        def body(sp, lines=tuple(lines)):
            terms = [_line(o2, s, c) for o2, s, c in lines]
            node = terms[0]
            for t in terms[1:]:
                node = _op("+", node, t)
            return node
        # the name carries the fitted constants: tables are cached by name
        found.append(LogitPrimitive(f"lines{lines}", "table", False, rule, body,
                                    positions="rows", numeric=True))
    return found


# ---------------------------------------------------------------- primitives over token ids
#
# A model over numerals ("0" … "149") uses their order: a sort head attends to the smallest
# key above the query, a counting model votes for the next number. Over @vocab numbered in
# its order (`token_id`, docs/language.md) each is one comparison or one offset, where the
# table has 154 × 154 entries. The rules read the same numbering, so a label is tested
# against its table like any other.

MIN_NUMERALS = 8          # with fewer numerals in order, the order says little
NEAR = 8                  # keys this close above (below) a query fit the score's slope


def numerals(vocab) -> int:
    """How many tokens of `vocab` spell 0, 1, 2, … at their own place in it."""
    n = 0
    for i, t in enumerate(vocab or ()):
        if str(t) != str(i):
            break
        n += 1
    return n


def _token_id(param: str, vocab: tuple) -> ir.Lookup:
    return ir.Lookup(tuple(vocab), tuple(range(len(vocab))), _param(param), name="token_id")


def _over_tokens(rows, cols, vocab) -> dict | None:
    """{token: id} when both bases are tokens of a vocabulary ordered by numerals."""
    if vocab is None or numerals(vocab) < MIN_NUMERALS:
        return None
    index = {t: i for i, t in enumerate(vocab)}
    if rows is None or not all(r in index for r in rows) or not all(c in index for c in cols):
        return None
    return index


def token_logit_primitives(values, rows: tuple, cols: tuple, vocab) -> list[LogitPrimitive]:
    """Candidates for a projection of tokens (or of an aggregate of them) onto token
    outputs, over a vocabulary of numerals in order: `(token_id(out) == token_id(inp) + 1)`
    (each number votes for the next), `… - 1` (the previous), each also with the special
    inputs voting for `<eos>` (a count that ends)."""
    index = _over_tokens(rows, cols, vocab)
    if index is None:
        return []
    tag = hash(tuple(vocab))        # tables are cached by name: the numbering is part of it
    found = []
    for c in (1, -1):
        sign = "+" if c > 0 else "-"
        main = LogitPrimitive(
            f"token_next{c}@{tag}", "table", False,
            lambda i, o, sp, c=c: index[o] == index[i] + c,
            lambda sp, sign=sign: _eq(_token_id("out", vocab),
                                      _op(sign, _token_id("inp", vocab), _const(1))))
        ends = LogitPrimitive("to_eos", "table", True, lambda i, o, sp: o == sp.eos,
                              _special_body("out", "eos"))
        found += [main, with_special_rows(main, ends)]
    return found


def _whole(x: float):
    """`x` as an int when it is one (`24`, not `24.0`, on the page)."""
    return int(x) if float(x).is_integer() else x


def _token_slope(m: np.ndarray, rows, cols, index, above: bool) -> float | None:
    """The slope of a score table over the key's id, on keys at most NEAR above (below) each
    numeral query, each row's mean taken out (softmax ignores a row's constant)."""
    n = numerals(tuple(index))
    xs, ys = [], []
    for r, q in enumerate(rows):
        qi = index[q]
        if qi >= n:
            continue
        near = [(c, index[k]) for c, k in enumerate(cols)
                if index[k] < n and 0 < (index[k] - qi if above else qi - index[k]) <= NEAR]
        if len(near) < 2:
            continue
        ks = np.array([k for _, k in near], dtype=float)
        v = m[r, [c for c, _ in near]]
        xs.append(ks - ks.mean())
        ys.append(v - v.mean())
    if not xs:
        return None
    x, y = np.concatenate(xs), np.concatenate(ys)
    return float((x * y).sum() / (x * x).sum()) if (x * x).sum() else None


def token_attention_primitives(values, rows: tuple, cols: tuple, vocab) -> list[AttentionPrimitive]:
    """Candidates for a (query × key) score table over tokens of a vocabulary of numerals in
    order, with the slope b read from the table near its diagonal (numeric ops):

    - above: `(token_id(k) > token_id(q)) * (C - b * token_id(k))`, C = b·|vocab|: the keys
      above the query score, the nearest highest (a sort head's "the next larger"); with the
      special queries scoring every key `C - b * token_id(k)` (the `<sep>` that starts the
      sorted copy reads the smallest);
    - below: `(token_id(k) < token_id(q)) * (b * token_id(k) + b)`, the mirror image."""
    index = _over_tokens(rows, cols, vocab)
    if index is None:
        return []
    m = np.asarray(values, dtype=float).reshape(len(rows), len(cols))
    n, found = len(vocab), []
    tid_k, tid_q = _token_id("k", vocab), _token_id("q", vocab)
    for above in (True, False):
        slope = _token_slope(m, rows, cols, index, above)
        if slope is None or (slope >= 0 if above else slope <= 0):
            continue
        b = _whole(readable(abs(slope)))
        if above:
            C = _whole(readable(b * n))
            score = lambda k, b=b, C=C: C - b * index[k]
            body = lambda sp, b=b, C=C: _op("-", _const(C), _op("*", _const(b), tid_k))
            test = lambda q, k: index[k] > index[q]
            compare = lambda sp: _op(">", tid_k, tid_q)
        else:
            score = lambda k, b=b: b * index[k] + b
            body = lambda sp, b=b: _op("+", _op("*", _const(b), tid_k), _const(b))
            test = lambda q, k: index[k] < index[q]
            compare = lambda sp: _op("<", tid_k, tid_q)
        word = "above" if above else "below"
        main = _attention(f"token_{word}{b}@{hash(tuple(vocab))}", "qk",
                          lambda q, k, sp, t=test, s=score: s(k) if t(q, k) else 0.0,
                          lambda sp, c=compare, f=body: _op("*", c(sp), f(sp)), numeric=True)
        every = _attention(f"token_{word}_all{b}@{hash(tuple(vocab))}", "qk",
                           lambda q, k, sp, s=score: s(k), body, numeric=True)
        found += [main, with_special_rows(main, every)]
    return found


# ---------------------------------------------------------------- MLP primitives


@frozen
class MlpPrimitive:
    """An element-wise replacement for an MLP reading one variable (two for `product`).

    `apply` maps the input's rows (N, |basis|), one-hot for a categorical input, to the
    output's rows over `output_basis` (one-hot for a categorical output); `node` is the IR
    expression the interpreter computes the same with; `prefix` names the new variable.
    Each name is the builtin of the same name, printed as its call (`exists(x, "a", 0.1)`)
    and computed by the interpreter's own function for it (rasp_ir/primitives.py, which
    states the semantics); only `no_op` is the library's: it prints as nothing (x itself).
    """

    name: str
    prefix: str
    params: tuple = ()
    arity: int = 1

    def output_basis(self, basis: tuple, basis_y: tuple | None = None) -> tuple:
        """The basis of the output's rows."""
        if self.name == "no_op":
            return tuple(basis)
        if self.name == "equal":
            return (False, True)
        if self.name == "special_or":
            return tuple(dict.fromkeys(tuple(basis) + tuple(v for v in basis_y
                                                             if v in self.params)))
        return semantics.output_basis(self.name, self.params, basis, basis_y)

    def apply(self, X: np.ndarray, basis: tuple, Y: np.ndarray | None = None,
              basis_y: tuple | None = None) -> np.ndarray:
        """The output rows (..., len(output_basis)) for input rows X (..., len(basis))."""
        X = np.asarray(X, dtype=np.float64)
        if self.name == "no_op":
            return X
        if Y is not None:
            Y = np.asarray(Y, dtype=np.float64)
        if self.name == "equal":
            # one-hot rows of two categorical inputs: their values compared, as `x == y`
            vx = np.asarray(basis, dtype=object)[X.argmax(-1)]
            vy = np.asarray(basis_y, dtype=object)[Y.argmax(-1)]
            same = np.array([a == b for a, b in zip(vx.ravel(), vy.ravel())], dtype=np.int64)
            return np.eye(2)[same.reshape(vx.shape)]
        if self.name == "special_or":
            # y where it is a special token, else x
            out_basis = self.output_basis(basis, basis_y)
            index = {v: i for i, v in enumerate(out_basis)}
            vx = np.asarray(basis, dtype=object)[X.argmax(-1)].ravel()
            vy = np.asarray(basis_y, dtype=object)[Y.argmax(-1)].ravel()
            codes = np.array([index[b if b in self.params else a] for a, b in zip(vx, vy)],
                             dtype=np.int64).reshape(X.shape[:-1])
            return np.eye(len(out_basis))[codes]
        out = semantics.apply(self.name, self.params, X, basis, Y, basis_y=basis_y)
        if self.name in semantics.CATEGORICAL:
            return np.eye(len(self.output_basis(basis, basis_y)))[out]
        return out

    def node(self, arg: ir.Node, other: ir.Node | None = None) -> ir.Node:
        """The IR expression computing the output from `arg` (and `other` for product)."""
        if self.name == "no_op":
            return arg
        if self.name == "equal":
            return ir.BinaryOp("==", arg, other)
        if self.name == "special_or":
            return ir.Cond(ir.In(other, self.params), other, arg)
        args = (arg, other) if self.arity == 2 else (arg,)
        return ir.Primitive(self.name, args, self.params)

    def variable_name(self, arg: str, other: str | None = None) -> str:
        """The new variable's name, e.g. `hardened_a1`, `a1_x_a2`; no_op keeps `arg`."""
        if self.name == "no_op":
            return arg
        if self.name == "product":
            return f"{arg}_x_{other}"
        if self.name == "equal":
            return f"{arg}_is_{other}"
        if self.name == "special_or":
            return f"{arg}_or_{other}"
        if self.name in semantics.COMPARED:
            return f"{self.prefix}_{other}"
        return f"{self.prefix}_{arg}"

    def label(self, arg: str = "x", other: str = "y") -> str:
        """The printed call, e.g. `exists(x, "a", 0.1)`."""
        return expr(self.node(ir.Ref(arg), ir.Ref(other)))


def identifier(value) -> str:
    """A basis value as part of a variable name: `<bos>` → `bos`, `-1` → `m1`."""
    text = str(value).replace("-", "m")
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_") or "v"


def mlp_primitives(basis: tuple, special: Specials = SPECIALS, *,
                   powers: tuple = (2, 3, 5),
                   exists_thresholds: tuple = (0.1,),
                   pure_thresholds: tuple = (0.95, 0.9, 0.85, 0.8, 0.75, 0.7),
                   balance_tolerance: float = 1e-6,
                   diff_bins: int = 5,
                   value_limit: int = 16,
                   pair_limit: int = 4) -> list[MlpPrimitive]:
    """The candidates for an MLP reading one variable over `basis`, simplest first:
    erase, no_op, harden, sharpen(n) for n in `powers`, exists(v, τ) for every basis value v
    and τ in `exists_thresholds` (when the basis has at most `value_limit` values), is_pure(τ)
    for τ in `pure_thresholds`, then balance(a, b) and diff(a, b) for each pair a before b of
    the basis values that are not special tokens or None (when there are 2 to `pair_limit`
    of them: the pairs grow quadratically)."""
    basis = tuple(basis)
    out = [MlpPrimitive("erase", "erased"), MlpPrimitive("no_op", ""),
           MlpPrimitive("harden", "hardened")]
    out += [MlpPrimitive("sharpen", "sharpened", (n,)) for n in powers]
    if len(basis) <= value_limit:
        out += [MlpPrimitive("exists", f"has_{identifier(v)}", (v, t))
                for v in basis for t in exists_thresholds]
    out += [MlpPrimitive("is_pure", "pure", (t,)) for t in pure_thresholds]
    plain = [v for v in basis if v is not None and v not in special.values]
    if 2 <= len(plain) <= pair_limit:
        pairs = list(itertools.combinations(plain, 2))
        out += [MlpPrimitive("balance", f"balance_{identifier(a)}_{identifier(b)}",
                             (a, b, balance_tolerance)) for a, b in pairs]
        out += [MlpPrimitive("diff", f"diff_{identifier(a)}_{identifier(b)}", (a, b, diff_bins))
                for a, b in pairs]
    return out


def mlp_pair_primitives(basis_x: tuple, basis_y: tuple, limit: int = 10_000,
                        special: Specials = SPECIALS) -> list[MlpPrimitive]:
    """The candidates for an MLP reading two variables: erase; equal (`x == y`, where the
    two bases share at least two values); special_or (`y if y in [specials] else x`, where
    y can be special and x can be two plain values); then product (the pair of values; left out when it would have more
    than `limit` basis values)."""
    out = [MlpPrimitive("erase", "erased")]
    if len(set(basis_x) & set(basis_y)) >= 2:
        out.append(MlpPrimitive("equal", "", arity=2))
    marks = tuple(v for v in special.values if v in basis_y)
    if marks and len(marks) < len(basis_y) and \
            len([v for v in basis_x if v not in special.values]) >= 2:
        # `y if y in [specials] else x`: x, unless y is a special token (a head that finds
        # nothing left to read attends to <bos>: a count or a sort that ends)
        out.append(MlpPrimitive("special_or", "", special.values, arity=2))
    if len(basis_x) * len(basis_y) <= limit:
        out.append(MlpPrimitive("product", "", arity=2))
    return out


def ordered_primitives(basis_x: tuple, basis_y: tuple, special: Specials = SPECIALS,
                       thresholds: tuple = (0.05, 0.1, 0.2, 0.3)) -> list[MlpPrimitive]:
    """least_above and greatest_below of x from y's value (y categorical), over the longest
    run of ordinary values of x's basis (no special token, no None) that y's basis also
    holds, when it has at least three values, for each threshold in `thresholds`: a sort's
    step, the nearest value above (or below) the current one among those a head sees."""
    run, best = [], []
    for v in tuple(basis_x) + (None,):
        if v is not None and v not in special.values and v in basis_y:
            run.append(v)
            continue
        if len(run) > len(best):
            best = run
        run = []
    if len(best) < 3:
        return []
    first, last = best[0], best[-1]
    return [MlpPrimitive(name, prefix, (first, last, t), arity=2)
            for name, prefix in (("least_above", "next_above"), ("greatest_below",
                                                                  "next_below"))
            for t in thresholds]
