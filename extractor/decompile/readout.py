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
4. Where none is kept and an opaque `mlp` is left, the **linear read-out**: a key's table
   (or a bias) plus one or two of the program's distributions (aggregates over few values
   that read no MLP) through tables of their own, or one per value of a small reading of the
   key (`product(tokens, h)`), fitted to the model's decisions on the positions the judge
   compares: least squares over every pairing, then logistic regression on the best and
   the simplest near them. The best few are judged, simplest first among near-equals.

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
from rasp_ir.passes import INLINE_LIMIT
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


def _kept(candidate: ir.Program, name: str, worst, accepts, primitive: str,
          agreement: float, round_scores: bool = False) -> tuple:
    """(the accepted read-out made tidier, its log entry): its logit tables rounded to
    integers, else one decimal, where the judge keeps it; the score tables it no longer
    needs dropped; with `round_scores`, the score tables on the page rounded (a linear
    read-out replaced the MLPs that needed a head's exact scores)."""
    for decimals in (0, 1):
        rounded = _rounded(candidate, name, decimals)
        good, w = accepts(rounded)
        if good:
            candidate, worst = rounded, w
            break
    candidate, dropped = drop_table_terms(candidate, accepts)
    entry = {"what": "logits", "primitive": primitive, "agreement": round(agreement, 4),
             "match": worst}
    if dropped:
        entry["dropped"] = dropped
    if round_scores:
        candidate, done = round_table_terms(candidate, accepts)
        if done:
            entry["rounded"] = done
    return candidate, entry


def _readings(program: ir.Program, probe: ir.Program, means: dict, sequences: list,
              specials: tuple, interp: Interpreter, probe_interp: Interpreter) -> list:
    """The readings the logits may be read out over, on `sequences`: the tokens, the
    position's residues, the tallies of each uniform mean of the tokens (`means`: its name
    in `probe` -> the aggregate of `program` it stands beside) and `harden` of each such
    aggregate."""
    seen = np.concatenate([np.arange(1, len(s) + 1) for s in sequences]).astype(float)
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


def read_out(program: ir.Program, sequences: list, specials: tuple, accepts,
             fit=None) -> tuple:
    """(the program with its logits read out as one table, a log entry) — or (None, a log
    entry saying why not). `accepts(program)` judges a candidate: (ok, worst-bucket match).
    `fit`: a function giving what the linear read-out is fitted to, (sequences, the
    positions the judge compares in each, the model's decisions there as the judge makes
    them), called only if the read-out gets that far; by default `sequences`, every
    position, and the program's own decisions. Fitted on the sequences
    that judge it, a fit of a hundred weights passed the choice set at 0.96 in a bucket
    and held 0.925 on fresh ones."""
    name = _logits_binding(program)
    if name is None or not program.causal:
        return None, {"what": "logits", "read_out": None, "why": "no causal logits binding"}
    predict = next(b.value for b in program.bindings if b.value is not None and
                   isinstance(b.value, ir.Predict))
    sigmoid = predict.function == "sigmoid"
    interp = Interpreter(program)
    logits = np.concatenate(evaluate(program, sequences, ir.Ref(name), interpreter=interp))
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
    found = _readings(program, probe, means, sequences, specials, interp, probe_interp)
    groups = []
    for size in (1, 2):
        for group in itertools.combinations(found, size):
            if int(np.prod([len(r.basis) for r in group])) > readback.MAX_COMBINATIONS:
                continue
            groups.append((_agreement([r.codes for r in group], logits, sigmoid),
                           int(np.prod([len(r.basis) for r in group])), group))
    # the best agreement first, but a group with fewer combinations first when it is
    # nearly as good (the judge, not this proxy, decides)
    why = {"what": "logits", "readings": len(found)}
    for agreement, _, group in _simplest_first(groups, NEAR)[:GROUPS]:
        candidate = _with_table(probe, name, group, _key_rows(group, logits), means)
        ok, worst = accepts(candidate)
        label = " x ".join(expr(r.node) for r in group)
        if ok:
            return _kept(candidate, name, worst, accepts, f"table over {label}", agreement)
        why.setdefault("best", label)
        why.setdefault("agreement", round(agreement, 4))
    if not any(isinstance(b.value, ir.Mlp) for b in program.bindings):
        return None, why
    # the logits as a key's table plus a few distributions read linearly
    fit_sequences, scored, decided = fit() if fit is not None else (sequences, None, None)
    if fit is not None:
        logits = np.concatenate(evaluate(program, fit_sequences, ir.Ref(name),
                                         interpreter=interp))
        found = _readings(program, probe, means, fit_sequences, specials, interp,
                          probe_interp)
    data = _Targets.of(logits, fit_sequences, scored, decided, sigmoid)
    tried = _linear_fits(program, data, found, interp, fit_sequences, logits.shape[1])
    for agreement, linear in tried[:LINEAR_JUDGED]:
        candidate = _with_table(probe, name, linear.group, linear.key_rows, means,
                                linear.linear)
        ok, worst = accepts(candidate)
        if ok:
            return _kept(candidate, name, worst, accepts, f"tables over {linear.label}",
                         agreement, round_scores=True)
        why.setdefault("linear", linear.label)
        why.setdefault("linear_agreement", round(agreement, 4))
    return None, why


# The linear read-out: where no table over a key keeps the match, the logits as a key's
# table plus one or two distributions read linearly (a head's mix of the tokens, through
# a small table of its own). A model that weighs two heads' shares of a token against each
# other (bin_majority_interleave's majority of each stream) decides by a sum no lookup over
# thresholds states, and its MLPs then add little to it.
LINEAR_KEYS = 6          # key groups the linear read-out pairs with distributions, best first
LINEAR_VARIABLES = 12    # distributions it may read: the first, in program order
LINEAR_JUDGED = 3        # fits taken to the judge, best first
LEAST_SQUARES_NEAR = 0.2    # least-squares fits this close to the best are refined, simplest first
LINEAR_SCALE = 10.0      # a decision's target logit (a one-hot, or ± for a set): rounded to
                         # integers the tables still say something


@attrs.frozen
class _Targets:
    """What the linear read-out fits: which positions the judge compares, each position's
    sequence, and the model's decisions there (argmax indices, or sets as bool rows)."""
    scored: np.ndarray
    sequence: np.ndarray
    decisions: np.ndarray
    sigmoid: bool
    n_sequences: int

    @classmethod
    def of(cls, logits: np.ndarray, sequences: list, scored: list | None,
           decided: list | None, sigmoid: bool) -> "_Targets":
        lengths = [len(s) for s in sequences]
        mask = np.concatenate([np.asarray(m, dtype=bool) for m in scored]) if scored \
            else np.ones(sum(lengths), dtype=bool)
        if decided is not None:
            decisions = np.concatenate([np.asarray(d) for d in decided])
        else:
            decisions = logits > 0 if sigmoid else logits.argmax(-1)
        sequence = np.repeat(np.arange(len(sequences)), lengths)
        return cls(mask, sequence, decisions, sigmoid, len(sequences))

    def target(self, width: int) -> np.ndarray:
        """The scored positions' target logits (N scored, width)."""
        d = self.decisions[self.scored]
        if self.sigmoid:
            return np.where(d, LINEAR_SCALE, -LINEAR_SCALE)
        return np.eye(width)[d] * LINEAR_SCALE

    def agreement(self, fitted: np.ndarray) -> float:
        """The share of sequences whose every scored position `fitted` (rows for the scored
        positions) decides as the model did."""
        d = self.decisions[self.scored]
        same = ((fitted > 0) == d).all(1) if self.sigmoid else fitted.argmax(1) == d
        wrong = np.unique(self.sequence[self.scored][~same])
        return 1 - len(wrong) / max(self.n_sequences, 1)


@attrs.frozen
class _LinearFit:
    group: tuple              # the key's readings
    key_rows: np.ndarray      # (combinations, outputs), zeros where never reached
    linear: tuple             # (node, basis, (|basis|, outputs) matrix) per distribution
    label: str


def _distributions(program: ir.Program, interp: Interpreter) -> list[tuple[str, tuple]]:
    """The aggregates over at most MAX_BASIS values that read no MLP: (name, basis)."""
    mlps = {b.name for b in program.bindings if isinstance(b.value, ir.Mlp)}
    found = []
    for b in program.bindings:
        if not isinstance(b.value, ir.Aggregate):
            continue
        t = interp.type_of(ir.Ref(b.name))
        if isinstance(t, T.Vec) and len(t.basis) <= MAX_BASIS and \
                not (passes.bindings_read(program, [b.value]) & mlps):
            found.append((b.name, tuple(t.basis)))
    return found[:LINEAR_VARIABLES]


def _linear_fits(program: ir.Program, data: _Targets, found: list, interp: Interpreter,
                 sequences: list, outputs: int) -> list[tuple[float, _LinearFit]]:
    """Every pairing of the LINEAR_KEYS best key groups (by the sequences their per-
    combination means decide as the model) with one or two distributions, fitted by least
    squares to the decisions' target logits on the scored positions; (agreement, fit),
    best first, then smallest."""
    at = data.scored
    target = data.target(outputs)
    keys = []
    for size in (1, 2):
        for group in itertools.combinations(found, size):
            if int(np.prod([len(r.basis) for r in group])) > readback.MAX_COMBINATIONS:
                continue
            means, inverse = readback.combination_means([r.codes[at] for r in group], target)
            keys.append((data.agreement(means[inverse]), group))
    keys.sort(key=lambda k: -k[0])
    rows = {name: (np.concatenate(evaluate(program, sequences, ir.Ref(name),
                                           interpreter=interp))[at], basis)
            for name, basis in _distributions(program, interp)}
    scored = []
    for group in [()] + [g for _, g in keys[:LINEAR_KEYS]]:      # () : a bias alone
        design = _Design(group, at)
        # each distribution read through one table, or one per value of a small reading of
        # the key (`product(tokens, x)`: the weights may differ by token)
        for split in [None] + [r for r in group if len(r.basis) <= MAX_SPLIT]:
            for size in (1, 2):
                for names in itertools.combinations(rows, size):
                    terms = [_term(n, *rows[n], split, at) for n in names]
                    if any(len(t[1]) * outputs > INLINE_LIMIT for t in terms):
                        continue
                    X = design.matrix([t[2] for t in terms])
                    W = np.linalg.lstsq(X, target, rcond=None)[0]
                    width = design.total + sum(len(t[1]) for t in terms)
                    scored.append((data.agreement(X @ W), width, design, terms, W))
    # the best by least squares, and the simplest of those it puts within
    # LEAST_SQUARES_NEAR of the best, again by logistic regression on the decisions
    # themselves: least squares spends its fit on positions already decided with a margin,
    # so a key of many combinations (more columns) ranks above the fit that needs only the
    # distributions, which logistic regression then fits as well or better
    best = max((f[0] for f in scored), default=0.0)
    simple = sorted((f for f in scored if f[0] >= best - LEAST_SQUARES_NEAR),
                    key=lambda f: (f[1], -f[0]))
    pool = {id(f): f for f in sorted(scored, key=lambda f: (-f[0], f[1]))[:2 * LINEAR_JUDGED]
            + simple[:2 * LINEAR_JUDGED]}
    fits = []
    for _, width, design, terms, start in pool.values():
        X = design.matrix([t[2] for t in terms])
        W = _logistic(X, data, start)
        key_rows = np.zeros((design.total, outputs))
        key_rows[design.reached] = W[:len(design.reached)]
        linear, start = [], len(design.reached)
        for node, basis, _ in terms:
            linear.append((node, basis, W[start:start + len(basis)]))
            start += len(basis)
        key = " x ".join(expr(r.node) for r in design.group) or "a bias"
        label = " + ".join([key, *(expr(t[0]) for t in terms)])
        fits.append((data.agreement(X @ W), width,
                     _LinearFit(design.group, key_rows, tuple(linear), label)))
    return [(a, fit) for a, _, fit in _simplest_first(fits, NEAR)]


def _simplest_first(fits: list, near: float) -> list:
    """(agreement, size, …) tuples: those within `near` of the best agreement first, smallest
    first (a 64-combination key fits its own sample better and says less), then the rest
    by agreement. Both read-outs rank their candidates so."""
    best = max((f[0] for f in fits), default=0.0)
    close = sorted((f for f in fits if f[0] >= best - near), key=lambda f: (f[1], -f[0]))
    rest = sorted((f for f in fits if f[0] < best - near), key=lambda f: (-f[0], f[1]))
    return close + rest


MAX_SPLIT = 8            # a distribution's weights may differ by the value of a reading this small


def _term(name: str, rows: np.ndarray, basis: tuple, split, at: np.ndarray) -> tuple:
    """(node, basis, rows on the scored positions) of distribution `name` read through one
    table, or through one per value of the reading `split` (`product(r, x)`, over the labels
    "u,v": its rows are x's, placed in the block of r's value)."""
    if split is None:
        return ir.Ref(name), tuple(basis), rows
    codes = split.codes[at]
    outer = np.zeros((len(rows), len(split.basis), len(basis)))
    outer[np.arange(len(rows)), codes] = rows
    labels = tuple(product_label(u, v) for u in split.basis for v in basis)
    return ir.Primitive("product", (split.node, ir.Ref(name)), ()), labels, \
        outer.reshape(len(rows), -1)


class _Design:
    """A key group's one-hot columns over the combinations the scored positions reach."""

    def __init__(self, group: tuple, at: np.ndarray):
        self.group = group
        index, self.total = _combination(group) if group else (np.zeros(len(at), int), 1)
        self.reached, column = np.unique(index[at], return_inverse=True)
        self.onehot = np.eye(len(self.reached))[column.reshape(-1)]

    def matrix(self, parts: list) -> np.ndarray:
        return np.concatenate([self.onehot] + parts, 1)


LOGISTIC_STEPS = 200     # L-BFGS iterations of the logistic fit
LOGISTIC_L2 = 1e-8       # its weight penalty: separable data would send the weights off
                         # (1e-4 already turned the boundary: 0.91 of a test's sequences, not 1)


def _logistic(X: np.ndarray, data: _Targets, start: np.ndarray) -> np.ndarray:
    """Weights W (columns of X, outputs) whose logits X @ W decide as the model: softmax
    cross-entropy on its argmax (sigmoid cross-entropy on each output of a set), from the
    least-squares fit `start`, scaled so the largest logit is LINEAR_SCALE-sized."""
    import torch
    x = torch.tensor(X, dtype=torch.float64)
    w = torch.tensor(start, dtype=torch.float64, requires_grad=True)
    d = torch.tensor(data.decisions[data.scored])
    if data.sigmoid:
        def loss():
            return torch.nn.functional.binary_cross_entropy_with_logits(x @ w, d.double())
    else:
        def loss():
            return torch.nn.functional.cross_entropy(x @ w, d.long())
    optimiser = torch.optim.LBFGS([w], max_iter=LOGISTIC_STEPS, line_search_fn="strong_wolfe")

    def closure():
        optimiser.zero_grad()
        value = loss() + LOGISTIC_L2 * (w ** 2).sum()
        value.backward()
        return value
    optimiser.step(closure)
    W = w.detach().numpy()
    if data.agreement(X @ W) < data.agreement(X @ start):
        return start
    # the logits' scale is free: make the largest about LINEAR_SCALE, so that rounding to
    # integers or one decimal keeps the table's distinctions
    top = np.abs(X @ W).max()
    return W * (LINEAR_SCALE / top) if top > 0 else W


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


def round_table_terms(program: ir.Program, accepts) -> tuple[ir.Program, list]:
    """Score tables on the page (at most INLINE_LIMIT entries) left at full precision, tried
    at 0, 1, then 2 decimals: once the logits are read out, the MLPs that needed a head's
    exact scores may be gone. (program, "decimals: the table's shape" per table rounded)."""
    done = []
    terms = [t for b in program.bindings for t in ir.walk(b.value)
             if isinstance(t, ir.Select) and isinstance(t.predicate, ir.Matrix)
             and t.predicate.name is None and passes.table_size(t.predicate) <= INLINE_LIMIT]
    for term in terms:
        m = term.predicate
        values = np.asarray(m.values, dtype=float)
        for decimals in (0, 1, 2):
            rounded = np.round(values, decimals)
            if np.array_equal(rounded, values):
                break
            cells = rounded.astype(int).tolist() if decimals == 0 else rounded.tolist()
            new = attrs.evolve(term, predicate=ir.Matrix(
                m.rows, m.cols, tuple(cells) if m.cols is None else tuple(map(tuple, cells))))
            trial = _with_term(program, term, new)
            if trial is not None and accepts(trial)[0]:
                program = trial
                done.append(f"{decimals} decimals: a {len(m.rows)} x {len(m.cols or (1,))} "
                            f"score table over {expr(term.keys)}")
                break
    return program, done


def _with_term(program: ir.Program, term, new) -> ir.Program | None:
    """`program` with the score term `term` replaced by `new` (None where it is not)."""
    found = []

    def swap(node, context):
        if node is term or node == term:
            found.append(node)
            return new
        return node

    bindings = tuple(ir.Binding(b.name, passes.rewrite(b.value, swap), b.origin)
                     for b in program.bindings)
    return ir.Program(**{**_fields(program), "bindings": bindings}) if found else None


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


def _combination(group: tuple) -> tuple[np.ndarray, int]:
    """(each position's combination of `group`'s readings, in itertools.product order; how
    many combinations there are)."""
    sizes = [len(r.basis) for r in group]
    index = np.zeros(len(group[0].codes), dtype=np.int64)
    for r, size in zip(group, sizes):
        index = index * size + r.codes
    return index, int(np.prod(sizes))


def _key_rows(group: tuple, logits: np.ndarray) -> np.ndarray:
    """The mean logits of each combination of `group`'s readings (zeros for one never
    reached: nothing to read, printed as zeros)."""
    index, total = _combination(group)
    counts = np.bincount(index, minlength=total)
    sums = np.zeros((total, logits.shape[1]))
    np.add.at(sums, index, logits)
    rows = sums / np.maximum(counts, 1)[:, None]
    rows[counts == 0] = 0.0
    return rows


def _with_table(probe: ir.Program, name: str, group: tuple, rows: np.ndarray,
                means: dict, linear: tuple = ()) -> ir.Program:
    """`probe` with the logits bound to `name` replaced by one table over `group`'s
    combination (`rows`, one per combination), plus `project(inp=x, op=matrix(M))` for each
    (x, M) of `linear`; unused bindings removed. No group: `rows` is one row, a bias."""
    outputs = _outputs(probe, name)
    extra = tuple(ir.Project(node, ir.Matrix(tuple(basis), tuple(outputs),
                                             tuple(map(tuple, np.asarray(M).tolist()))))
                  for node, basis, M in linear)

    def logits(key):
        first = ir.Project(key, table)
        return ir.LogitsSum((first,) + extra) if extra else first
    if not group:
        table = ir.Matrix(tuple(outputs), None, tuple(np.asarray(rows[0]).tolist()))
        bindings = tuple(ir.Binding(name, logits(None)) if b.name == name else b
                         for b in probe.bindings)
        return passes.simplify(ir.Program(**{**_fields(probe), "bindings": bindings}))
    operand, keys = group[0].node, list(group[0].basis)
    for other in group[1:]:
        operand = ir.Primitive("product", (operand, other.node), ())
        keys = [product_label(u, v) for u in keys for v in other.basis]
    table = ir.Matrix(tuple(keys), tuple(outputs), tuple(map(tuple, rows.tolist())))
    key_name = _fresh("key" if len(group) > 1 else _reading_name(group[0]),
                      {b.name for b in probe.bindings})
    bindings = []
    for b in probe.bindings:
        if b.name == name and isinstance(operand, ir.Tokens):     # the tokens need no name
            bindings.append(ir.Binding(name, logits(operand)))
        elif b.name == name:
            bindings.append(ir.Binding(key_name, operand))
            bindings.append(ir.Binding(name, logits(ir.Ref(key_name))))
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
    """The tables of the logits bound to `name` rounded to `decimals`."""
    def rounded(v):
        if not (isinstance(v, ir.Project) and isinstance(v.predicate, ir.Matrix)):
            return v
        m = v.predicate
        values = np.round(np.asarray(m.values, dtype=float), decimals)
        if decimals == 0:
            values = values.astype(int)
        values = values.tolist()
        return ir.Project(v.operand, ir.Matrix(m.rows, m.cols, tuple(values) if m.cols is None
                                               else tuple(map(tuple, values))))
    bindings = []
    for b in program.bindings:
        v = b.value
        if b.name == name:
            v = ir.LogitsSum(tuple(rounded(t) for t in v.terms)) \
                if isinstance(v, ir.LogitsSum) else rounded(v)
        bindings.append(ir.Binding(b.name, v, b.origin))
    return ir.Program(**{**_fields(program), "bindings": tuple(bindings)})
