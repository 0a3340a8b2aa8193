"""Simplification passes, shared by hand-written and extracted programs.

Each pass is a pure function `ir.Program -> ir.Program` (nodes are rebuilt with
`attrs.evolve`, never edited) that keeps what the program computes at its `@output` and in its
`@expect` lines, with the interpreter as the judge (up to float rounding where terms are
re-associated; see each pass). Bindings that nothing observable reads may change or vanish.

- `remove_dead`: drop bindings that neither the @output nor an @expect line depends on.
- `drop_zero_terms`: drop score and logit terms that add nothing (all-zero tables), and, where
  only a softmax reads the sum, terms that add the same to every key (scores) or to every
  output (logits).
- `fold_constants`: merge constant logit terms, put one-term sums and nested sums in the form
  the printer writes them, fold arithmetic on constants.
- `rename` / `descriptive_names`: rename bindings consistently.
- `inline_selectors`: write a selector read by one aggregate inside it (RASP's usual
  `aggregate(select(...), v)`), a choice of style like the names.
- `inline_tables`: print small tables on the page instead of in the side-file (a choice of
  style: only table names change).
- `simplify`: the first three until nothing changes.
"""

from __future__ import annotations

import re
from collections import defaultdict

import attrs
import numpy as np

from . import nodes as ir
from . import ops
from . import types as T
from .names import KEYWORDS, RESERVED

# what the readers of a value can tell apart: everything (EXACT), or not a constant added per
# query to a softmax attention score (SCORE), or per position to softmax logits (LOGITS)
EXACT, SCORE, LOGITS = "exact", "score", "logits"
ZERO, CONSTANT = "zero", "constant"     # what a dropped term adds: 0, or a shift


# ---------------------------------------------------------------- one traversal for every pass

def rewrite(node: ir.Node, fn, context: str = EXACT) -> ir.Node:
    """Rebuild `node` bottom-up: children first (each in the context its parent gives it),
    then `fn(node, context)` on the node with its new children. Unchanged subtrees are kept."""
    changes = {}
    for name, many in ir.child_fields(type(node)):
        value = getattr(node, name)
        inner = _child_context(node, name, context)
        if many:
            new = tuple(rewrite(v, fn, inner) for v in value)
            if any(a is not b for a, b in zip(new, value)):
                changes[name] = new
        elif value is not None:
            new = rewrite(value, fn, inner)
            if new is not value:
                changes[name] = new
    if changes:
        node = attrs.evolve(node, **changes)
    return fn(node, context)


def _child_context(node, field: str, context: str) -> str:
    """A softmax ignores a per-query shift of its scores and a per-position shift of its
    logits; sums and scalings pass that on to their terms."""
    if isinstance(node, ir.Aggregate) and field == "selector":
        return SCORE        # only a ScoreSum is ever shifted, and a score aggregates by softmax
    if isinstance(node, ir.Predict) and node.function == "softmax":
        return LOGITS
    if isinstance(node, (ir.ScoreSum, ir.ScoreScale)) and context == SCORE:
        return SCORE
    if isinstance(node, ir.LogitsSum) and context == LOGITS:
        return LOGITS
    return EXACT


def _rewrite_program(program: ir.Program, fn, contexts: dict | None = None) -> ir.Program:
    """`rewrite` over every binding (in the context its readers give it), the output and the
    @expect subjects."""
    contexts = contexts or {}
    bindings = tuple(_evolve_if(b, value=rewrite(b.value, fn, contexts.get(b.name, EXACT)))
                     for b in program.bindings)
    output = rewrite(program.output, fn) if program.output is not None else None
    expects = tuple(_evolve_if(e, subject=rewrite(e.subject, fn)) for e in program.expects)
    return _evolve_if(program, bindings=bindings, output=output, expects=expects)


def _evolve_if(obj, **changes):
    """`attrs.evolve` only where a field really changed (keeps unchanged objects shared)."""
    changed = {k: v for k, v in changes.items() if getattr(obj, k) is not v}
    return attrs.evolve(obj, **changed) if changed else obj


def _contexts(program: ir.Program) -> dict[str, str]:
    """For each binding, what its readers can tell apart: SCORE or LOGITS when every reader is
    that kind of softmax input, else EXACT (the output, @expect lines, anything else)."""
    uses = defaultdict(set)

    def visit(node, context):
        if isinstance(node, ir.Ref):
            uses[node.name].add(context)
            return
        for name, many in ir.child_fields(type(node)):
            value = getattr(node, name)
            for child in (value if many else (value,)):
                if child is not None:
                    visit(child, _child_context(node, name, context))

    if program.output is not None:
        visit(program.output, EXACT)
    for e in program.expects:
        visit(e.subject, EXACT)
    contexts = {}
    for b in reversed(program.bindings):      # every reader of b comes after it
        seen = uses.get(b.name, {EXACT})
        contexts[b.name] = next(iter(seen)) if len(seen) == 1 else EXACT
        visit(b.value, contexts[b.name])
    return contexts


class _Facts:
    """What the passes ask about a program's values: binding values behind Refs and types."""

    def __init__(self, program: ir.Program):
        self.program = program
        self.values = {b.name: b.value for b in program.bindings}
        types, _ = T.infer(program)
        self.ctx = T.Context.of(program)
        self.ctx.bindings = types

    def resolve(self, node):
        """The expression behind a chain of Refs."""
        while isinstance(node, ir.Ref) and node.name in self.values:
            node = self.values[node.name]
        return node

    def type_of(self, node):
        try:
            return T.type_of(node, self.ctx)
        except T.TypeIssue:
            return None

    def sums_to_one(self, node) -> bool:
        """Is every row of this value, read as a vector, summing to 1? One-hot categorical
        values are; softmax averages and predictions of such rows are (up to rounding)."""
        t = self.type_of(node)
        if isinstance(t, T.Cat):
            return True
        node = self.resolve(node)
        if isinstance(node, ir.Predict):
            return node.function == "softmax"
        if isinstance(node, ir.Aggregate) and isinstance(t, T.Vec):
            soft = isinstance(self.type_of(node.selector), T.Score) or \
                self.program.attention == "softmax"     # a hard mean's empty row is all zero
            return soft and self.sums_to_one(node.values)
        return False


# ---------------------------------------------------------------- remove_dead

def bindings_read(program: ir.Program, roots) -> set[str]:
    """The names of the bindings the expressions `roots` read, directly or through others."""
    values = {b.name: b.value for b in program.bindings}
    live, stack = set(), list(roots)
    while stack:
        for n in ir.walk(stack.pop()):
            if isinstance(n, ir.Ref) and n.name in values and n.name not in live:
                live.add(n.name)
                stack.append(values[n.name])
    return live


def remove_dead(program: ir.Program) -> ir.Program:
    """Drop the bindings that neither the @output nor any @expect subject depends on (library
    bindings too: the parser brings those in only when something reads them). A program with
    neither an @output nor an @expect line is returned as it is."""
    roots = [e.subject for e in program.expects]
    if program.output is not None:
        roots.append(program.output)
    if not roots:
        return program
    live = bindings_read(program, roots)
    kept = tuple(b for b in program.bindings if b.name in live)
    return program if len(kept) == len(program.bindings) else attrs.evolve(program, bindings=kept)


# ---------------------------------------------------------------- drop_zero_terms

def drop_zero_terms(program: ir.Program) -> ir.Program:
    """Drop the terms of score and logit sums that do not change what is observed:

    - a score term (`select` with a matrix, `select(..., op=False)`, a scaled or summed group
      of these) whose table is all zero; where only softmax attention reads the sum, also one
      that adds the same to every key of a query: a key-only vector or query × key matrix with
      equal entries along the keys (or `op=True`), read from keys whose rows sum to 1;
    - a logit term (`project`) whose table is all zero; where only a softmax prediction reads
      the sum (not a sigmoid, not the @output itself), also one whose table is equal along
      the outputs (a bias with equal entries, or rows that are constant).

    A score sum left with no term attends uniformly: it keeps one term, a key-only all-zero
    select (over `tokens` when @vocab is known); a logit sum keeps an all-zero bias. A sum left
    with one term becomes that term (see `fold_constants`). Terms that are Refs are judged by
    the binding they name; the binding stays until `remove_dead`."""
    facts = _Facts(program)

    def fn(node, context):
        if isinstance(node, ir.ScoreSum):
            return _drop_terms(node, context, facts, _score_term, _uniform_score)
        if isinstance(node, ir.LogitsSum):
            return _drop_terms(node, context, facts, _logit_term, _zero_logits)
        return node

    return _rewrite_program(program, fn, _contexts(program))


def _drop_terms(node, context, facts, classify, empty):
    kinds = [classify(t, facts) for t in node.terms]
    droppable = (ZERO,) if context == EXACT else (ZERO, CONSTANT)
    kept = tuple(t for t, k in zip(node.terms, kinds) if k not in droppable)
    if len(kept) == len(node.terms):
        return node
    if not kept:
        kept = (empty([t for t, k in zip(node.terms, kinds) if k in droppable], node, facts),)
    return _sum(attrs.evolve(node, terms=kept), facts)


def _table(node) -> np.ndarray | None:
    """A Matrix's values when every one is finite (a NaN or infinity is never dropped)."""
    values = np.asarray(node.values, dtype=np.float64)
    return values if np.isfinite(values).all() else None


def _score_term(term, facts: _Facts):
    """ZERO, CONSTANT (the same for every key of a query) or None (anything else)."""
    node = facts.resolve(term)
    if isinstance(node, ir.ScoreScale):
        return ZERO if node.factor == 0 else _score_term(node.operand, facts)
    if isinstance(node, ir.ScoreSum):
        return _combined([_score_term(t, facts) for t in node.terms])
    if not isinstance(node, ir.Select):
        return None
    pred = node.predicate
    if isinstance(pred, ir.Matrix):
        values = _table(pred)
        if values is None:
            return None
        if not values.any():
            return ZERO
        along_keys = values == (values[0] if node.queries is None else values[:, :1])
        if along_keys.all() and facts.sums_to_one(node.keys):
            return CONSTANT      # q·M·k_j = Σ_i q_i c_i for every key row k_j summing to 1
        return None
    if isinstance(pred, ir.Lambda) and isinstance(pred.body, ir.Const) \
            and isinstance(pred.body.value, bool):
        if not pred.body.value:
            return ZERO
        # a true predicate is hard_scale everywhere; over a vector key it is read bilinearly
        key_t = facts.type_of(node.keys)
        return CONSTANT if isinstance(key_t, T.Cat) or facts.sums_to_one(node.keys) else None
    return None


def _logit_term(term, facts: _Facts):
    """ZERO, CONSTANT (the same for every output at a position) or None."""
    node = facts.resolve(term)
    if isinstance(node, ir.LogitsSum):
        return _combined([_logit_term(t, facts) for t in node.terms])
    if not isinstance(node, ir.Project):
        return None
    pred = node.predicate
    if isinstance(pred, ir.Matrix):
        values = _table(pred)
        if values is None:
            return None
        if not values.any():
            return ZERO
        along_outputs = values == (values[0] if values.ndim == 1 else values[:, :1])
        return CONSTANT if along_outputs.all() else None    # x·M adds Σ_i x_i c_i to each
    if isinstance(pred, ir.Lambda) and isinstance(pred.body, ir.Const) \
            and isinstance(pred.body.value, bool):
        return CONSTANT if pred.body.value else ZERO
    return None


def _combined(kinds):
    if all(k == ZERO for k in kinds):
        return ZERO
    return CONSTANT if all(k in (ZERO, CONSTANT) for k in kinds) else None


def _uniform_score(dropped, node, facts: _Facts):
    """The one term of a score sum whose terms were all dropped: uniform attention, written
    `select(k=tokens, op=False)` (a score of 0 for every key)."""
    for term in dropped:
        n = facts.resolve(term)
        if isinstance(n, ir.Select) and n.queries is None and isinstance(n.predicate, ir.Lambda) \
                and isinstance(n.predicate.body, ir.Const) and n.predicate.body.value is False:
            return term
    return ir.Select(ir.Tokens(), None, ir.Lambda(("k",), ir.Const(False)))


def _zero_logits(dropped, node, facts: _Facts):
    """The one term of a logit sum whose terms were all dropped: a zero bias."""
    for term in dropped:
        n = facts.resolve(term)
        if isinstance(n, ir.Project) and n.operand is None and _logit_term(n, facts) == ZERO:
            return term
    t = facts.type_of(node)
    if isinstance(t, T.Logits):
        return ir.Project(None, ir.Matrix(tuple(t.out), None, (0.0,) * len(t.out)))
    return dropped[0]


def _sum(node, facts: _Facts):
    """A sum in the form the printer writes it: nested sums flattened (the parser flattens
    `a + (b + c)`); one term stands alone. A lone boolean selector under hard attention would
    become a hard mean, so it stays a score as `1.0 * sel` (the same numbers)."""
    cls = type(node)
    if any(isinstance(t, cls) for t in node.terms):
        flat = tuple(x for t in node.terms for x in (t.terms if isinstance(t, cls) else (t,)))
        node = attrs.evolve(node, terms=flat)
    if len(node.terms) != 1:
        return node
    (term,) = node.terms
    if cls is ir.ScoreSum and facts.program.attention != "softmax" \
            and not isinstance(facts.type_of(term), T.Score):
        return ir.ScoreScale(1.0, term, span=node.span)
    return term


# ---------------------------------------------------------------- fold_constants

def fold_constants(program: ir.Program) -> ir.Program:
    """Fold what is constant:

    - the constant logit terms of one sum (`project(op=M)` with a table M, directly or behind
      a Ref) become one term, the sum of their tables, named after the first named one
      (`NAME.folded`, made unique); constant terms with a predicate stay (they read better);
    - a score or logit sum of one term becomes that term, nested sums are flattened (what the
      printer writes and the parser reads back);
    - `c1 OP c2` and `OP c` on constants become their value, where the interpreter's result is
      certain: numbers (ints within ±2^53, finite floats), strings and booleans, every
      operator but `%` on floats; never a division by zero, a NaN or an infinity. A whole
      binding, output or @expect subject never becomes a bare constant (the language has no
      constant s-op there: the parser would make it a compile-time value)."""
    facts = _Facts(program)
    names = set(_table_names(program))

    def fn(node, context):
        if isinstance(node, ir.LogitsSum):
            return _sum(_merge_biases(node, facts, names), facts)
        if isinstance(node, ir.ScoreSum):
            return _sum(node, facts)
        if isinstance(node, (ir.BinaryOp, ir.UnaryOp)):
            return _fold(node)
        return node

    def top(old, new):
        return old if isinstance(new, ir.Const) and not isinstance(old, ir.Const) else new

    folded = _rewrite_program(program, fn)
    return _evolve_if(
        folded,
        bindings=tuple(_evolve_if(b, value=top(a.value, b.value))
                       for a, b in zip(program.bindings, folded.bindings)),
        output=top(program.output, folded.output) if program.output is not None else None,
        expects=tuple(_evolve_if(e, subject=top(a.subject, e.subject))
                      for a, e in zip(program.expects, folded.expects)))


def _table_names(program: ir.Program) -> list[str]:
    trees = [b.value for b in program.bindings]
    return [n.name for tree in trees for n in ir.walk(tree)
            if isinstance(n, ir.Matrix) and n.name is not None]


def _merge_biases(node: ir.LogitsSum, facts: _Facts, names: set) -> ir.LogitsSum:
    biases = []
    for i, term in enumerate(node.terms):
        n = facts.resolve(term)
        if isinstance(n, ir.Project) and n.operand is None and isinstance(n.predicate, ir.Matrix) \
                and n.predicate.cols is None:
            biases.append((i, n.predicate))
    rows = biases[0][1].rows if biases else None
    biases = [(i, m) for i, m in biases if m.rows == rows]
    if len(biases) < 2:
        return node
    total = np.zeros(len(rows))
    for _, m in biases:
        total = total + np.asarray(m.values, dtype=np.float64)
    named = [m.name for _, m in biases if m.name is not None]
    name = None
    if named:
        name = base = f"{named[0]}.folded"
        k = 2
        while name in names:
            name, k = f"{base}_{k}", k + 1
        names.add(name)
    merged = ir.Project(None, ir.Matrix(rows, None, tuple(total.tolist()), name=name))
    first, drop = biases[0][0], {i for i, _ in biases}
    terms = tuple(merged if i == first else t for i, t in enumerate(node.terms)
                  if i == first or i not in drop)
    return attrs.evolve(node, terms=terms)


_LIMIT = 2 ** 53        # ints beyond this divide differently in numpy (float64) and Python


def _certain_atom(v) -> bool:
    if isinstance(v, bool) or isinstance(v, str):
        return True
    if isinstance(v, int):
        return abs(v) <= _LIMIT
    return isinstance(v, float) and np.isfinite(v)


def _fold(node):
    """The constant `node` computes, when the interpreter's answer is certain."""
    if isinstance(node, ir.UnaryOp):
        if not isinstance(node.operand, ir.Const) or not _certain_atom(node.operand.value):
            return node
        compute = lambda: ops.unary(node.op, node.operand.value)  # noqa: E731
    else:
        left, right = node.left, node.right
        if not (isinstance(left, ir.Const) and isinstance(right, ir.Const)):
            return node
        a, b = left.value, right.value
        if not (_certain_atom(a) and _certain_atom(b)):
            return node
        if node.op == "%" and (isinstance(a, float) or isinstance(b, float)):
            return node         # numpy's and Python's float modulo may differ in the last bit
        if isinstance(a, str) != isinstance(b, str) and node.op not in ("and", "or"):
            return node         # `"ab" * 3` may be huge; mixed comparisons go through numpy
        compute = lambda: ops.binary(node.op, a, b)  # noqa: E731
    try:
        value = compute()
    except (ArithmeticError, TypeError, ValueError):
        return node             # an error at run time stays one
    if not _certain_atom(value):
        return node
    return ir.Const(value, span=node.span)


# ---------------------------------------------------------------- names

_NAME = re.compile(r"[A-Za-z_][A-Za-z_0-9]*")


def taken_names(program: ir.Program) -> set[str]:
    """Names a binding may not take: keywords, reserved names, the names the parser binds
    before the file's own (builtins, the default and loaded libraries' names: it would rename
    a binding that shadows one; `Program.predefined`), the @vocab name."""
    out = set(KEYWORDS) | RESERVED | program.predefined
    if program.vocab_name:
        out.add(program.vocab_name)
    return out


def rename(program: ir.Program, names: dict[str, str]) -> ir.Program:
    """Rename bindings (`{old: new}`) and every Ref to them. ValueError when an old name is
    not a binding of this file (library bindings keep their names), a new name is not an
    identifier, is a keyword, builtin or library name, or two bindings would share a name."""
    names = {old: new for old, new in names.items() if old != new}
    if not names:
        return program
    own = {b.name: b for b in program.bindings}
    for old, new in names.items():
        if old not in own:
            raise ValueError(f"no binding `{old}` to rename")
        if own[old].origin is not None:
            raise ValueError(f"`{old}` comes from the library {own[old].origin!r}")
        if not _NAME.fullmatch(new):
            raise ValueError(f"`{new}` is not a name")
    final = [names.get(b.name, b.name) for b in program.bindings]
    clashes = sorted({n for n in final if final.count(n) > 1})
    if clashes:
        raise ValueError(f"two bindings would be called `{clashes[0]}`")
    reserved = sorted(set(names.values()) & taken_names(program))
    if reserved:
        raise ValueError(f"`{reserved[0]}` is a keyword, builtin or library name")

    def fn(node, context):
        if isinstance(node, ir.Ref) and node.name in names:
            return attrs.evolve(node, name=names[node.name])
        return node

    renamed = _rewrite_program(program, fn)
    bindings = tuple(_evolve_if(b, name=names.get(b.name, b.name)) for b in renamed.bindings)
    return attrs.evolve(renamed, bindings=bindings)


# machine-made names: `x`, `a1`, `s0_0`, `a0_0_token`, `m1`, `logits2`
_GENERIC = re.compile(r"[a-z]{1,2}\d*|[a-z]\d+(_\d+)*(_\w+)?|logits\d*")
# a name the extractor derived from a machine-made one (`sharpened_a0_0_token`): it follows
# its operand's new name (`sharpened_mean_token`)
_DERIVED = re.compile(r"(hardened|sharpened|is_\w+?_exists)_(?P<base>.+)")


def _machine_made(name: str) -> bool:
    derived = _DERIVED.fullmatch(name)
    return bool(_GENERIC.fullmatch(name) or
                (derived and _GENERIC.fullmatch(derived.group("base"))))


def descriptive_names(program: ir.Program) -> ir.Program:
    """Give machine-made names (`x`, `a1`, `s0_0`, `a0_0_token`, `m1`, `logits2`) a
    descriptive one where the expression leaves no doubt, in program order (so names build on
    earlier new names), only when the new name is free (`rename`'s rules); other names stay:

    | binding value                                             | name                 |
    |-----------------------------------------------------------|----------------------|
    | `harden(X)` / `sharpen(X, n)`                             | `hardened_X` / `sharpened_X` |
    | `exists(X, v, t)` with v a plain word or number           | `is_v_exists_X`      |
    | `aggregate(s, v=X)`, s selecting key position q - 1       | `prev_X`             |
    | ... key position q + 1                                    | `next_X`             |
    | `aggregate(s, v=X)`, s constant (uniform attention)       | `mean_X`             |
    | `aggregate(select(k=prev_Y, q=Y, op=(k == q)), v=X)`      | `induced_X`          |
    | `selector_width(select(k=X, q=X, op=(k == q)))`           | `hist_X`             |
    | `softmax(...)` / `sigmoid(...)`                           | `prediction`         |

    A name derived from a machine-made one (`sharpened_a0_0_token`) is renamed the same way.
    X is the name of the binding read (`token` for tokens, `pos` for indices); anything else
    in X's place gives no name. The position selectors recognised are `k == q ± c` written
    either way round, over `indices ± c` on either side. `induced_X` is an induction head's
    read: X where the token before matches this one (`prev_Y` any binding the previous
    rule names, or would; the comparison may sit in one branch of an `if`, as special
    queries often look elsewhere)."""
    facts = _Facts(program)
    taken = taken_names(program) | {b.name for b in program.bindings}
    mapping: dict[str, str] = {}
    for b in program.bindings:
        if b.origin is not None or not _machine_made(b.name):
            continue
        proposal = _describe(b.value, facts, mapping)
        if proposal and proposal not in taken and _NAME.fullmatch(proposal):
            mapping[b.name] = proposal
            taken.add(proposal)
    return rename(program, mapping)


def _operand_name(node, mapping) -> str | None:
    if isinstance(node, ir.Ref):
        return mapping.get(node.name, node.name)
    if isinstance(node, ir.Tokens) and node.view == "asis":
        return "token"
    if isinstance(node, ir.Indices):
        return "pos"
    return None


def _describe(value, facts: _Facts, mapping) -> str | None:
    if isinstance(value, ir.Predict):
        return "prediction"
    if isinstance(value, ir.Primitive) and value.name in ("harden", "sharpen", "exists"):
        x = _operand_name(value.args[0], mapping)
        if x is None:
            return None
        if value.name == "exists":
            word = str(value.params[0])
            return f"is_{word}_exists_{x}" if re.fullmatch(r"\w+", word) else None
        return f"{value.name}ed_{x}"
    if isinstance(value, ir.Aggregate):
        x = _operand_name(value.values, mapping)
        sel = facts.resolve(value.selector)
        if x is None:
            return None
        offset = _position_offset(sel)
        if offset in (-1, 1):
            return f"{'prev' if offset == -1 else 'next'}_{x}"
        everything = isinstance(sel, ir.Select) and isinstance(sel.predicate, ir.Lambda) \
            and sel.predicate.body == ir.Const(True)
        soft = isinstance(facts.type_of(value.selector), T.Score) or \
            facts.program.attention == "softmax"
        if everything or (soft and _score_term(sel, facts) in (ZERO, CONSTANT)):
            return f"mean_{x}"     # every key alike: the (prefix) mean
        return f"induced_{x}" if _induction(sel, facts) else None
    if isinstance(value, ir.SelectorWidth):
        sel = facts.resolve(value.selector)
        if isinstance(sel, ir.Select) and sel.queries is not None and sel.keys == sel.queries \
                and sel.predicate == ir.Compare("=="):
            x = _operand_name(sel.keys, mapping)
            return f"hist_{x}" if x is not None else None
    return None


def _induction(sel, facts: _Facts) -> bool:
    """Does `sel` match keys whose previous value equals the query's (`k == q`, over keys
    prev_Y and queries Y)?"""
    if not isinstance(sel, ir.Select) or sel.queries is None:
        return False
    behind = facts.resolve(sel.keys)
    if not isinstance(behind, ir.Aggregate) or \
            _position_offset(facts.resolve(behind.selector)) != -1:
        return False
    if facts.resolve(behind.values) != facts.resolve(sel.queries):
        return False
    equal = ir.BinaryOp("==", ir.Param("k"), ir.Param("q"))
    pred = sel.predicate
    if pred == ir.Compare("=="):
        return True
    if not isinstance(pred, ir.Lambda):
        return False
    body = pred.body
    return body == equal or (isinstance(body, ir.Cond) and equal in (body.then, body.otherwise))


def _position_offset(sel) -> int | None:
    """d where `sel` selects exactly the key at position q + d (an `==` over indices)."""
    if not isinstance(sel, ir.Select) or sel.queries is None:
        return None
    key, query = _shifted(sel.keys, ir.Indices), _shifted(sel.queries, ir.Indices)
    if key is None or query is None:
        return None
    pred = sel.predicate
    if pred == ir.Compare("=="):
        k, q = ("k", 0), ("q", 0)
    elif isinstance(pred, ir.Lambda) and isinstance(pred.body, ir.BinaryOp) \
            and pred.body.op == "==":
        k, q = _shifted(pred.body.left, ir.Param), _shifted(pred.body.right, ir.Param)
        if k is None or q is None:
            return None
        if k[0] == "q" and q[0] == "k":
            k, q = q, k
        if (k[0], q[0]) != ("k", "q"):
            return None
    else:
        return None
    # key_index + key_shift + k_shift == query_index + query_shift + q_shift
    return (query + q[1]) - (key + k[1])


def _shifted(node, base):
    """`base ± c` as its shift c (for indices) or (param name, c) (for parameters)."""
    def leaf(n):
        if base is ir.Indices and isinstance(n, ir.Indices):
            return 0
        if base is ir.Param and isinstance(n, ir.Param):
            return (n.name, 0)
        return None
    found = leaf(node)
    if found is not None:
        return found
    if not (isinstance(node, ir.BinaryOp) and node.op in ("+", "-")):
        return None
    for inner, const, sign in ((node.left, node.right, 1 if node.op == "+" else -1),
                               (node.right, node.left, 1 if node.op == "+" else None)):
        found = leaf(inner)
        if found is not None and sign is not None and isinstance(const, ir.Const) \
                and type(const.value) is int:
            shift = sign * const.value
            return found + shift if base is ir.Indices else (found[0], shift)
    return None


# ---------------------------------------------------------------- inline_selectors

def inline_selectors(program: ir.Program) -> ir.Program:
    """Write each selector binding that exactly one `aggregate` or `selector_width` reads, and
    nothing else, inside that reader: `aggregate(s=select(...), v=x)`, the way RASP programs are
    usually written. A selector read twice keeps its name (it says the two share a pattern),
    as do a selector an @expect line reads and library bindings. Changes no value."""
    facts = _Facts(program)
    candidates = {b.name for b in program.bindings
                  if b.origin is None and T.is_selector(facts.ctx.bindings.get(b.name))}
    uses, inlinable = defaultdict(int), defaultdict(int)
    roots = [b.value for b in program.bindings] + [e.subject for e in program.expects] + \
        ([program.output] if program.output is not None else [])
    for node in (n for root in roots for n in ir.walk(root)):
        if isinstance(node, ir.Ref):
            uses[node.name] += 1
        if isinstance(node, (ir.Aggregate, ir.SelectorWidth)) and isinstance(node.selector, ir.Ref):
            inlinable[node.selector.name] += 1
    for e in program.expects:
        candidates -= {n.name for n in ir.walk(e.subject) if isinstance(n, ir.Ref)}
    chosen = {name for name in candidates if uses[name] == 1 and inlinable[name] == 1}
    if not chosen:
        return program
    values = {b.name: b.value for b in program.bindings if b.name in chosen}

    def fn(node, context):
        if isinstance(node, (ir.Aggregate, ir.SelectorWidth)) and \
                isinstance(node.selector, ir.Ref) and node.selector.name in values:
            return attrs.evolve(node, selector=values[node.selector.name])
        return node

    inlined = _rewrite_program(program, fn)
    kept = tuple(b for b in inlined.bindings if b.name not in chosen)
    return attrs.evolve(inlined, bindings=kept)


# ---------------------------------------------------------------- tables on the page

INLINE_LIMIT = 512


def table_size(table: ir.Matrix) -> int:
    """The entries of a table: rows × cols, or rows for a vector."""
    return len(table.rows) * (len(table.cols) if table.cols is not None else 1)


def inline_tables(program: ir.Program, limit: int = INLINE_LIMIT) -> ir.Program:
    """Unname every table of at most `limit` entries, so the printer writes its numbers on the
    page (a labelled grid) instead of in the side-file; larger ones keep their names. An
    MLP's four tables go together: inline only if all of them hold at most `limit` entries
    in all (half an MLP on the page explains nothing). Values are untouched."""
    def fn(node, context):
        if isinstance(node, ir.Mlp):
            weights = [getattr(node, n) for n in _MLP_TABLES]
            if sum(table_size(w) for w in weights) > limit:
                return node
            return attrs.evolve(node, **{n: _unnamed(w) for n, w in zip(_MLP_TABLES, weights)})
        changes = {}
        for name, many in ir.child_fields(type(node)):
            value = getattr(node, name)
            if many:
                new = tuple(_small(v, limit) for v in value)
                if any(a is not b for a, b in zip(new, value)):
                    changes[name] = new
            elif value is not None and _small(value, limit) is not value:
                changes[name] = _small(value, limit)
        return attrs.evolve(node, **changes) if changes else node

    program = _rewrite_program(program, fn)
    # a binding whose whole value is a table (no parent node to unname it)
    bindings = tuple(_evolve_if(b, value=_small(b.value, limit)) for b in program.bindings)
    return _evolve_if(program, bindings=bindings)


_MLP_TABLES = ("W_in", "b_in", "W_out", "b_out")


def _unnamed(table: ir.Matrix) -> ir.Matrix:
    return attrs.evolve(table, name=None) if table.name is not None else table


def _small(node, limit: int):
    """`node` unnamed when it is a named table of at most `limit` entries (else itself)."""
    if isinstance(node, ir.Matrix) and node.name is not None and table_size(node) <= limit:
        return _unnamed(node)
    return node


# ---------------------------------------------------------------- the pipeline

PASSES = (drop_zero_terms, fold_constants, remove_dead)


def simplify(program: ir.Program, max_rounds: int = 50) -> ir.Program:
    """`drop_zero_terms`, `fold_constants` and `remove_dead` until the program stops
    changing (names are left alone: `descriptive_names` is a separate choice)."""
    for _ in range(max_rounds):
        before = program
        for p in PASSES:
            program = p(program)
        if program == before:
            return program
    return program
