"""The logits read out as one table over a few readable quantities.

After the replacement steps (extractor/decompile/replace.py) a program can still hold an opaque
`mlp` or tables too large for the page, although what it decides depends on little: a Dyck
model's allowed next tokens depend on the depth, the number of opening brackets seen minus the
closing ones. A trained head that attends almost uniformly over the prefix averages the
tokens; its MLP and the logit tables read that average through the position to get the
counts back. This step tries to say so directly:

1. **Readings** of the program's values on the judge's sequences: the tokens; each softmax
   aggregate of the tokens re-read as the uniform mean over the prefix
   (`select(k=tokens, op=False)`) and counted with `tally(mean, a, b, low, high)` (how many
   more positions held `a` than `b`, or how many held `a`), clipped to the range the data
   reaches when that is at most MAX_RANGE values; `harden` of each aggregate; and the
   position's residue `indices % m` for m in MODULI.
2. **Groups** of one or two readings whose combinations number at most
   readback.MAX_COMBINATIONS are ranked by how often the mean logits of a position's
   combination make the same decision as its own logits (the argmax, or the set above 0 for
   sigmoid outputs); groups within NEAR of the best come first, fewest combinations first.
3. The best groups, in that order, replace every logit term by one
   `project(inp=key, op=matrix(...))` over the combination `key` (the reading itself, or the
   `product` of two), its rows the mean logits of each combination, rounded to integers where
   that keeps the judgement; a combination the data never reaches gets a row of zeros. The
   first that the judge accepts is kept.

Nothing here is assumed: every step is judged like any replacement, and the caller keeps the
result only where it is easier to read (fewer opaque MLPs or side-file tables).
"""

from __future__ import annotations

import itertools
import re

import attrs
import numpy as np

from extractor.decompile import readback
from rasp_ir import nodes as ir
from rasp_ir import passes
from rasp_ir import types as T
from rasp_ir.interpreter import Interpreter, evaluate
from rasp_ir.primitives import product_label
from rasp_ir.printer import expr

MAX_RANGE = 8            # values a tally may take on the page (its clipped range)
MAX_BASIS = 16           # aggregates over at most this many token values are counted
GROUPS = 4               # groups taken to the judge, best first
NEAR = 0.01              # agreement this close to the best counts as as good
MODULI = (2, 3, 4)       # residues of the position read


def uniform_mean() -> ir.Select:
    """`select(k=tokens, op=False)`: every visible key scores 0, so softmax attends uniformly."""
    return ir.Select(ir.Tokens(), None, ir.Lambda(("k",), ir.Const(False)))


def _logits_binding(program: ir.Program) -> str | None:
    """The name bound to the logits the output predicts from (`prediction = sigmoid(logits)`)."""
    target = program.output
    bound = {b.name: b.value for b in program.bindings}
    if isinstance(target, ir.Ref) and isinstance(bound.get(target.name), ir.Predict):
        logits = bound[target.name].logits
        if isinstance(logits, ir.Ref) and logits.name in bound:
            return logits.name
    return None


def _token_aggregates(program: ir.Program) -> list[str]:
    """The bindings that are softmax aggregates of the tokens over a small basis."""
    interp = Interpreter(program)
    found = []
    for b in program.bindings:
        v = b.value
        if isinstance(v, ir.Aggregate) and isinstance(v.values, ir.Tokens):
            t = interp.type_of(ir.Ref(b.name))
            if isinstance(t, T.Vec) and len(t.basis) <= MAX_BASIS:
                found.append(b.name)
    return found


def _decisions(logits: np.ndarray, sigmoid: bool) -> np.ndarray:
    """Per position, what the logits decide: the set above 0, or the argmax (one column)."""
    return logits > 0 if sigmoid else logits.argmax(-1)[:, None]


def _agreement(codes: list, logits: np.ndarray, sigmoid: bool) -> float:
    """The share of positions whose combination's mean logits decide what their own do."""
    means, inverse = readback.combination_means(codes, logits)
    same = (_decisions(means, sigmoid)[inverse] == _decisions(logits, sigmoid)).all(1)
    return float(same.mean())


def _tallies(name: str, rows: np.ndarray, basis: tuple, seen: np.ndarray, ordinary) -> list:
    """The tally readings of a uniform mean with rows (N, |basis|) of the ordinary tokens:
    counts of one value and differences of two, where the data reaches at most MAX_RANGE
    values (or fewer after clipping at the high end, which the judge then tests)."""
    found = []
    index = {v: i for i, v in enumerate(basis)}
    pairs = [(a, None) for a in ordinary] + list(itertools.permutations(ordinary, 2))
    for a, b in pairs:
        d = rows[:, index[a]] - (rows[:, index[b]] if b is not None else 0)
        raw = np.floor(seen * d + 0.5).astype(np.int64)
        low = int(raw.min())
        high = min(int(raw.max()), low + MAX_RANGE - 1)
        if high == low:
            continue
        codes = np.clip(raw, low, high) - low
        node = ir.Primitive("tally", (ir.Ref(name),), (a, b, low, high))
        found.append(readback.Reading(node, tuple(range(low, high + 1)), codes, name))
    return found


def read_out(program: ir.Program, sequences: list, specials: tuple, accepts) -> tuple:
    """(the program with its logits read out as one table, a log entry) — or (None, a log
    entry saying why not). `accepts(program)` judges a candidate: (ok, worst-bucket match)."""
    name = _logits_binding(program)
    if name is None or not program.causal:
        return None, {"what": "logits", "read_out": None, "why": "no causal logits binding"}
    predict = next(b.value for b in program.bindings if b.value is not None and
                   isinstance(b.value, ir.Predict))
    sigmoid = predict.function == "sigmoid"
    interp = Interpreter(program)
    logits = np.concatenate(evaluate(program, sequences, ir.Ref(name), interpreter=interp))
    seen = np.concatenate([np.arange(1, len(s) + 1) for s in sequences]).astype(float)
    # the uniform means of the tokens, beside the program's own bindings
    taken = {b.name for b in program.bindings}
    means = {}
    for a in _token_aggregates(program):
        means[_fresh("mean_token", taken)] = a
        taken |= set(means)
    added = tuple(ir.Binding(m, ir.Aggregate(uniform_mean(), ir.Tokens())) for m in means)
    at = next(i for i, b in enumerate(program.bindings) if b.name == name)
    probe = ir.Program(**{**_fields(program), "bindings": program.bindings[:at] + added
                          + program.bindings[at:]})
    probe_interp = Interpreter(probe)
    found = []
    vocab = tuple(T.basis_of(interp.type_of(ir.Tokens())))
    position = {v: i for i, v in enumerate(vocab)}
    codes = np.array([position[t] for s in sequences for t in s])
    found.append(readback.Reading(ir.Tokens(), vocab, codes, "tokens"))
    positions = seen.astype(np.int64) - 1
    for m in MODULI:          # the position's residue: periodic languages count this way
        node = ir.BinaryOp("%", ir.Indices(), ir.Const(m))
        found.append(readback.Reading(node, tuple(range(m)), positions % m, "indices"))
    for m, source in means.items():
        rows = np.concatenate(evaluate(probe, sequences, ir.Ref(m), interpreter=probe_interp))
        basis = tuple(T.basis_of(probe_interp.type_of(ir.Ref(m))))
        ordinary = [v for v in basis if v not in specials]
        found += _tallies(m, rows, basis, seen, ordinary)
        own = np.concatenate(evaluate(program, sequences, ir.Ref(source), interpreter=interp))
        hard = own.argmax(1)
        if len(np.unique(hard)) > 1:
            found.append(readback.Reading(ir.Primitive("harden", (ir.Ref(source),), ()),
                                          basis, hard, source))
    groups = []
    for size in (1, 2):
        for group in itertools.combinations(found, size):
            if int(np.prod([len(r.basis) for r in group])) > readback.MAX_COMBINATIONS:
                continue
            groups.append((_agreement([r.codes for r in group], logits, sigmoid), group))
    # the best agreement first, but a group with fewer combinations first when it is
    # nearly as good (the judge, not this proxy, decides)
    best = max((g[0] for g in groups), default=0.0)
    def size(g):
        return int(np.prod([len(r.basis) for r in g[1]]))
    near = sorted((g for g in groups if g[0] >= best - NEAR), key=lambda g: (size(g), -g[0]))
    rest = sorted((g for g in groups if g[0] < best - NEAR), key=lambda g: (-g[0], size(g)))
    why = {"what": "logits", "readings": len(found)}
    for agreement, group in (near + rest)[:GROUPS]:
        candidate = _with_table(probe, name, group, logits, means)
        ok, worst = accepts(candidate)
        label = " x ".join(expr(r.node) for r in group)
        if ok:
            for decimals in (0, 1):
                rounded = _rounded(candidate, name, decimals)
                good, w = accepts(rounded)
                if good:
                    candidate, worst = rounded, w
                    break
            candidate, dropped = drop_table_terms(candidate, accepts)
            entry = {"what": "logits", "primitive": f"table over {label}",
                     "agreement": round(agreement, 4), "match": worst}
            if dropped:
                entry["dropped"] = dropped
            return candidate, entry
        why.setdefault("best", label)
        why.setdefault("agreement", round(agreement, 4))
    return None, why


def drop_table_terms(program: ir.Program, accepts) -> tuple[ir.Program, list]:
    """Score terms held as tables, tried without, largest first: what the logits read now
    may need less of a head than the MLP did. (program, the tables dropped)."""
    dropped = []
    terms = []
    for b in program.bindings:
        for node in ir.walk(b.value):
            if isinstance(node, ir.ScoreSum):
                terms += [(np.asarray(t.predicate.values).size, t) for t in node.terms
                          if isinstance(t, ir.Select) and isinstance(t.predicate, ir.Matrix)]
    for _, term in sorted(terms, key=lambda x: -x[0]):
        trial = _without_term(program, term)
        if trial is not None and accepts(trial)[0]:
            program = trial
            m = term.predicate
            dropped.append(m.name or f"an inline {len(m.rows)} x {len(m.cols or (1,))} score "
                           f"table over {expr(term.keys)}")
    return program, dropped


def _without_term(program: ir.Program, term) -> ir.Program | None:
    """`program` with the score term `term` left out of the sum that holds it (None when the
    sum would be empty or does not hold it)."""
    found = []

    def drop(node, context):
        if isinstance(node, ir.ScoreSum) and any(t is term or t == term for t in node.terms):
            kept = tuple(t for t in node.terms if not (t is term or t == term))
            if kept:
                found.append(node)
                return attrs.evolve(node, terms=kept) if len(kept) > 1 else kept[0]
        return node

    bindings = tuple(ir.Binding(b.name, passes.rewrite(b.value, drop), b.origin)
                     for b in program.bindings)
    if not found:
        return None
    return passes.simplify(ir.Program(**{**_fields(program), "bindings": bindings}))


def _fields(program: ir.Program) -> dict:
    return {f.name: getattr(program, f.name) for f in attrs.fields(type(program))}


def _with_table(probe: ir.Program, name: str, group: tuple, logits: np.ndarray,
                means: dict) -> ir.Program:
    """`probe` with the logits bound to `name` replaced by one table over `group`'s
    combination, unused bindings removed."""
    sizes = [len(r.basis) for r in group]
    index = np.zeros(len(logits), dtype=np.int64)
    for r, size in zip(group, sizes):
        index = index * size + r.codes
    total = int(np.prod(sizes))
    counts = np.bincount(index, minlength=total)
    sums = np.zeros((total, logits.shape[1]))
    np.add.at(sums, index, logits)
    rows = sums / np.maximum(counts, 1)[:, None]
    rows[counts == 0] = 0.0          # never reached: nothing to read, printed as zeros
    operand, keys = group[0].node, list(group[0].basis)
    for other in group[1:]:
        operand = ir.Primitive("product", (operand, other.node), ())
        keys = [product_label(u, v) for u in keys for v in other.basis]
    outputs = _outputs(probe, name)
    table = ir.Matrix(tuple(keys), tuple(outputs), tuple(map(tuple, rows.tolist())))
    key_name = _fresh("key" if len(group) > 1 else _reading_name(group[0]),
                      {b.name for b in probe.bindings})
    bindings = []
    for b in probe.bindings:
        if b.name == name and isinstance(operand, ir.Tokens):     # the tokens need no name
            bindings.append(ir.Binding(name, ir.Project(operand, table)))
        elif b.name == name:
            bindings.append(ir.Binding(key_name, operand))
            bindings.append(ir.Binding(name, ir.Project(ir.Ref(key_name), table)))
        else:
            bindings.append(b)
    return passes.simplify(ir.Program(**{**_fields(probe), "bindings": tuple(bindings)}))


def _reading_name(reading) -> str:
    """`count_a`, `count_a_minus_b` for a tally over plain token names, else `key`."""
    node = reading.node
    if isinstance(node, ir.Primitive) and node.name == "tally":
        a, b = node.params[:2]
        name = f"count_{a}" if b is None else f"count_{a}_minus_{b}"
        if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            return name
    if isinstance(node, ir.BinaryOp) and node.op == "%" and isinstance(node.left, ir.Indices):
        return f"pos_mod_{node.right.value}"
    return "key"


def _fresh(name: str, taken: set) -> str:
    """`name`, or `name_2`, `name_3` … when a binding already has it."""
    candidate, n = name, 1
    while candidate in taken:
        n += 1
        candidate = f"{name}_{n}"
    return candidate


def _outputs(program: ir.Program, name: str) -> tuple:
    t = Interpreter(program).type_of(ir.Ref(name))
    return tuple(t.out)


def _rounded(program: ir.Program, name: str, decimals: int) -> ir.Program:
    bindings = []
    for b in program.bindings:
        v = b.value
        if b.name == name and isinstance(v, ir.Project) and isinstance(v.predicate, ir.Matrix):
            m = v.predicate
            values = np.round(np.asarray(m.values, dtype=float), decimals)
            if decimals == 0:
                values = values.astype(int)
            v = ir.Project(v.operand, ir.Matrix(m.rows, m.cols, tuple(map(tuple, values.tolist()))))
        bindings.append(ir.Binding(b.name, v, b.origin))
    return ir.Program(**{**_fields(program), "bindings": tuple(bindings)})
