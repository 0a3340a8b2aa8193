"""An MLP read as a routed lookup: a few small readings choose a class, and each class either
writes a constant or passes one value on through its own rows.

A count's MLP is where this comes from. After `<sep>` it writes the smallest number a head
holds (the start); on a number, the next number; once the head holds no number above the
token, the end. The class is small (a special token or not, anything above or not), but two
classes pass on a value with a hundred and fifty possibilities each, through different
tables (the value itself; the token's successor). A lookup over the readings' combinations
(extractor/decompile/readback.py) would need every pair of values; a sum of readings
(replace.py's `_read_as_sum`) cannot make one part write the start after `<sep>` and
nothing on a number. A route keeps them apart:

    up = least_above(a0_1_token, tokens, "0", "149", 0.005);
    m0_route = {...}[product(tokens in [specials], up == None)];
    m0_token = tokens if m0_route == 0 else None;
    m0_up = up if m0_route == 2 else None;

each line a variable with its own rows to the stream: the route's row is the constant of a
class (the mean output where its passed value is None), a passed value's rows are the MLP's
mean output in its class for that value less that constant, and None (every other class)
writes nothing.

The search counts the model's decisions, not the variance explained (a count's start and
end are one position a sequence each; most of the output's variance is the successor): on
the decision check's sample (replace.DecisionCheck), each combination of the readings'
values is a class and takes, of the constant and the SHORTLIST sources that fit its output
best, the simplest that decides about as many of its positions as the best; classes with
the same source are joined where that loses no more. Readings alone rank by the positions
they decide, the best are paired and the best pairs extended; routes rank by the sequences
they decide (docs/extractor.md, Primitives and replacement).
"""

from __future__ import annotations

import itertools

import numpy as np
from attrs import field, frozen

from extractor.decompile import readback
from extractor.decompile.circuit_program import MlpReplacement
from extractor.decompile.primitives import SPECIALS, ordered_primitives
from rasp_ir import nodes as ir
from rasp_ir import primitives as semantics
from rasp_ir.passes import rewrite
from rasp_ir.printer import expr

MAX_ROUTER_VALUES = 8        # a router reading takes at most this many values
ROUTER_POOL = 6              # the router readings paired (those deciding most alone)
MAX_READINGS = 3             # a route reads at most this many of them
MAX_CLASSES = 64             # reached combinations of a route's readings
COMPONENTS = 16              # the logits' main components a source's fit is measured on
SHORTLIST = 3                # the sources (besides the constant) judged for a class
GAIN = 0.02                  # a route of more readings must decide this many more sequences
PER_SIZE = 3                 # routes of each size ranked by the decisions they reproduce
BEAM = 3                     # the pairs of readings extended by a third
THRESHOLDS = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2)    # a head holds a value: more than τ
ENDS = (0.005, 0.02, 0.1)    # the τ of the readings "holds nothing above / below" (each a
                             # router reading: they multiply the search's routes)


@frozen
class Named:
    """A value the route's lines share, bound once: `name = node`. `name` is provisional
    (unique among the candidates); the route names the ones it uses `base`, `base_2`, …"""
    name: str
    node: ir.Node
    base: str


@frozen
class Part:
    """A reading of the MLP's inputs on the judged positions: `node` takes the value
    `basis[codes[i]]` at position i (node None: the constant source). `needs`: the bindings
    the node refers to."""
    name: str
    node: ir.Node | None
    basis: tuple
    codes: np.ndarray = field(eq=False, repr=False)
    needs: tuple = ()


@frozen
class Route:
    """Readings, the class of each combination of their values reached (`combos`: the
    combination's codes → class), and each class's source (an index into the sources, -1
    for a constant)."""
    readings: tuple
    combos: dict = field(eq=False)
    sources: tuple


def _codes_key(codes: np.ndarray) -> bytes:
    return np.ascontiguousarray(codes, dtype=np.int64).tobytes()


def _unique(parts: list[Part]) -> list[Part]:
    """The parts with distinct codes (the first of each), and more than one value reached."""
    seen, kept = set(), []
    for p in parts:
        key = _codes_key(p.codes)
        if key in seen or (p.node is not None and len(np.unique(p.codes)) < 2):
            continue
        seen.add(key)
        kept.append(p)
    return kept


def candidates(inputs: dict, categorical: set, names: dict,
               special=SPECIALS) -> tuple[list[Part], list[Part]]:
    """(router readings, sources) of an MLP's inputs. `inputs`: {ref: (rows, basis)} on the
    judged positions; `names`: each ref's name."""
    routers, sources = [], [Part("constant", None, (None,), np.zeros(0, dtype=np.int64))]
    for ref, (X, basis) in inputs.items():
        codes = X.argmax(1)
        label = names[ref]
        node = ref if ref in categorical else ir.Primitive("harden", (ref,), ())
        sources.append(Part(label if ref in categorical else f"hardened_{label}", node,
                            tuple(basis), codes))
        if len(basis) <= MAX_ROUTER_VALUES:
            routers.append(Part(label, node, tuple(basis), codes))
        marks = tuple(v for v in special.values if v in basis)
        if ref in categorical and marks and len(marks) < len(basis):
            is_special = np.isin(np.asarray(basis, dtype=object)[codes], marks)
            routers.append(Part(f"{label}_special", ir.In(ref, marks), (False, True),
                                is_special.astype(np.int64)))
    for a, b in itertools.permutations(inputs, 2):
        if b not in categorical:
            continue
        (X, bx), (Y, by) = inputs[a], inputs[b]
        for p in ordered_primitives(bx, by, special, THRESHOLDS):
            codes = semantics.apply(p.name, p.params, X, bx, Y, basis_y=by)
            basis = p.output_basis(bx, by)
            name = f"{p.prefix}_{names[a]}@{p.params[-1]}"
            helper = Named(name, p.node(a, b), f"{p.prefix}_{names[a]}")
            sources.append(Part(name, ir.Ref(name), tuple(basis), codes, (helper,)))
            if p.params[-1] not in ENDS:
                continue
            none = basis.index(None)
            routers.append(Part(f"{name}_none", ir.BinaryOp("==", ir.Ref(name), ir.Const(None)),
                                (False, True), (codes == none).astype(np.int64), (helper,)))
    return _unique(routers), _unique(sources)


def _fresh(name: str, used: set) -> str:
    """`name`, or `name_2`, `name_3`, … when a line already binds it."""
    out, k = name, 2
    while out in used:
        out, k = f"{name}_{k}", k + 1
    used.add(out)
    return out


# ------------------------------------------------------------------ the search


class Decisions:
    """The model's decisions on the decision check's sample (replace.DecisionCheck): what
    the logits read of the MLP's output there (`y`, (n, V)), its main components (`z`, for
    a shortlist), and whether a write in its place decides each position as the model
    does."""

    def __init__(self, check, out: np.ndarray):
        self.check = check
        self.at = check.positions
        self.y = out[self.at] @ check.reader
        centred = self.y - self.y.mean(0)
        _, _, vt = np.linalg.svd(centred[:: max(1, len(centred) // 4000)], full_matrices=False)
        self.z = centred @ vt[:COMPONENTS].T
        self.scored = np.asarray(check.scored, dtype=bool)

    def agrees(self, where: np.ndarray, codes: np.ndarray | None) -> np.ndarray:
        """At the positions `where` (indices into the sample): decided as the model decides
        them (or not scored) when each value of `codes` there (None: one value) writes its
        positions' mean."""
        y = self.y[where]
        if codes is None:
            part = np.broadcast_to(y.mean(0), y.shape)
        else:
            _, inverse = np.unique(codes, return_inverse=True)
            inverse = inverse.reshape(-1)
            sums = np.zeros((int(inverse.max()) + 1, y.shape[1]))
            _add(sums, inverse, y)
            part = (sums / np.bincount(inverse)[:, None])[inverse]
        return self.check.same_at(where, part)

    def residual(self, where: np.ndarray, codes: np.ndarray | None) -> float:
        """The squared distance of the main components at `where` to their means per value
        of `codes` (None: one value)."""
        z = self.z[where]
        if codes is None:
            return float(((z - z.mean(0)) ** 2).sum())
        _, inverse, counts = np.unique(codes, return_inverse=True, return_counts=True)
        inverse = inverse.reshape(-1)
        sums = np.stack([np.bincount(inverse, weights=z[:, j]) for j in range(z.shape[1])], 1)
        return float((z ** 2).sum() - ((sums ** 2).sum(1) / counts).sum())

    def positions(self, ok: np.ndarray) -> float:
        """The share of the sample's scored positions decided as the model decides them."""
        return float(ok[self.scored].mean()) if self.scored.any() else 1.0

    def sequences(self, ok: np.ndarray) -> float:
        """The share of the sample's sequences decided as the model decides them."""
        return float(np.logical_and.reduceat(ok, self.check.starts).mean())


def _add(sums: np.ndarray, inverse: np.ndarray, y: np.ndarray) -> None:
    """sums[inverse[i]] += y[i], by sorting (np.add.at is slow on many rows)."""
    order = np.argsort(inverse, kind="stable")
    sorted_ = inverse[order]
    starts = np.flatnonzero(np.r_[True, sorted_[1:] != sorted_[:-1]])
    sums[sorted_[starts]] += np.add.reduceat(y[order], starts, axis=0)


def _combos(readings: tuple, at: np.ndarray) -> np.ndarray:
    """The combination of the readings' values at positions `at`, numbered row-major (as
    itertools.product over their bases)."""
    combo = np.zeros(len(at), dtype=np.int64)
    for r in readings:
        combo = combo * len(r.basis) + r.codes[at]
    return combo


def _tolerance(scored: float) -> float:
    """The decisions a simpler choice may lose: a two-hundredth of the scored positions, at
    least one."""
    return max(1.0, 0.005 * scored)


def route_of(readings: tuple, sources: list[Part], d: Decisions
             ) -> tuple[float, float, Route] | None:
    """(the shares of the sample's sequences and scored positions decided as the model
    decides them, the route over `readings`), or None when its combinations are too many or
    give one class. Each combination is given a source: of the constant and the SHORTLIST
    sources that explain most of its output, the first (simplest) within `_tolerance` of the
    one deciding most of its positions as the model does. Combinations with the same source
    are then joined, most frequent first, where that loses no more."""
    combo = _combos(readings, d.at)
    keys, classes = np.unique(combo, return_inverse=True)
    classes = classes.reshape(-1)
    n = len(keys)
    if n < 2 or n > MAX_CLASSES:
        return None
    members = [np.flatnonzero(classes == c) for c in range(n)]
    scored = [float(d.scored[m].sum()) for m in members]
    choice, ok = [], np.zeros(len(classes), dtype=bool)
    for c, where in enumerate(members):
        at = d.at[where]                 # the class's positions among all judged ones
        fits = sorted(range(1, len(sources)), key=lambda s: d.residual(where,
                                                                       sources[s].codes[at]))
        tried = [0] + sorted(fits[:SHORTLIST])
        results = {s: d.agrees(where, None if s == 0 else sources[s].codes[at])
                   for s in tried}
        good = {s: float(r[d.scored[where]].sum()) for s, r in results.items()}
        top = max(good.values())
        pick = next(s for s in tried if good[s] >= top - _tolerance(scored[c]))
        choice.append(pick)
        ok[where] = results[pick]
    label, groups = -np.ones(n, dtype=np.int64), []
    for c in np.argsort([-len(m) for m in members], kind="stable"):
        s = choice[c]
        for g, group in enumerate(groups):
            if choice[group[0]] != s:
                continue
            where = np.concatenate([members[k] for k in group + [int(c)]])
            joined = d.agrees(where, None if s == 0 else sources[s].codes[d.at[where]])
            if joined[d.scored[where]].sum() >= ok[where][d.scored[where]].sum() - \
                    _tolerance(sum(scored[k] for k in group) + scored[c]):
                ok[where] = joined
                group.append(int(c))
                label[c] = g
                break
        else:
            label[c] = len(groups)
            groups.append([int(c)])
    if len(groups) < 2:
        return None                    # a single reading of the inputs: not a route
    order = np.argsort([min(g) for g in groups])         # numbered in the readings' order
    rank = np.empty(len(groups), dtype=np.int64)
    rank[order] = np.arange(len(groups))
    label = rank[label]
    source_of = [-1] * len(groups)
    for c in range(n):
        source_of[label[c]] = -1 if choice[c] == 0 else choice[c]
    route = Route(readings, {int(k): int(label[c]) for c, k in enumerate(keys)},
                  tuple(source_of))
    return d.sequences(ok), d.positions(ok), route


def routes(routers: list[Part], sources: list[Part], d: Decisions) -> list[tuple[float, Route]]:
    """The routes worth judging, as (the share of the sample's sequences decided as the
    model does, route), best first: decisions, not the variance explained, rank them (a
    count's end and start are one position a sequence each). Readings alone are ranked by
    the positions they decide (no one of a count's readings decides a whole sequence
    alone); the ROUTER_POOL best are paired, and the BEAM best pairs extended by a third.
    Of each size the PER_SIZE best are kept, a larger route only where it decides GAIN more
    of the sequences than the best smaller one."""
    def rank(found):
        return sorted((x for x in found if x is not None), key=lambda x: (-x[0], -x[1]))

    alone = rank(route_of((r,), sources, d) for r in routers)
    pool = [x[2].readings[0] for x in sorted(alone, key=lambda x: -x[1])[:ROUTER_POOL]]
    pairs = rank(route_of(g, sources, d) for g in itertools.combinations(pool, 2))
    triples = {tuple(sorted(x[2].readings + (r,), key=pool.index))
               for x in pairs[:BEAM] for r in pool if r not in x[2].readings}
    found, best = [], -1.0
    for size in (alone, pairs, rank(route_of(g, sources, d) for g in sorted(
            triples, key=lambda g: [pool.index(r) for r in g]))):
        kept = [x for x in size if x[0] > best + GAIN][:PER_SIZE]
        if kept:
            best = kept[0][0]
        found += kept
    return [(x[0], x[2]) for x in sorted(found, key=lambda x: (-x[0], -x[1]))]


# ------------------------------------------------------------------ the replacement


@frozen
class Tables:
    """A route's writes fitted on some positions: each position's class (`at`), each class's
    constant (`E`, (classes, D)), and each passing class's rows over its source's basis
    (`rows[k]`, written on top of the constant; the source's None, which the line's own None
    shares, writes nothing there: the class's constant is the mean where its source is None)."""
    at: np.ndarray
    E: np.ndarray
    rows: dict


def _classes(route: Route) -> np.ndarray:
    """The class of every combination of the readings' values (itertools.product order); a
    combination never reached takes the class that most reached combinations have."""
    sizes = [len(r.basis) for r in route.readings]
    counts = np.zeros(len(route.sources))
    for c, k in route.combos.items():
        counts[k] += 1
    classes = np.full(int(np.prod(sizes)), int(counts.argmax()))
    for c, k in route.combos.items():
        classes[c] = k
    return classes


def fit(route: Route, sources: list[Part], out: np.ndarray,
        positions: np.ndarray | None = None) -> Tables:
    """The route's writes: the mean output per class, and per (class, passed value)."""
    idx = np.arange(len(out)) if positions is None else positions
    at = _classes(route)[_combos(route.readings, idx)]
    y = out[idx]
    E, rows = np.zeros((len(route.sources), y.shape[1])), {}
    for k, s in enumerate(route.sources):
        here = at == k
        if not here.any():
            continue
        if s < 0:
            E[k] = y[here].mean(0)
            continue
        source = sources[s]
        codes = source.codes[idx][here]
        size = len(source.basis)
        sums = np.zeros((size, y.shape[1]))
        _add(sums, codes, y[here])
        n = np.bincount(codes, minlength=size)
        none = source.basis.index(None) if None in source.basis else None
        base = sums[none] / n[none] if none is not None and n[none] else np.zeros(y.shape[1])
        E[k] = base
        # a value the class never reached writes the class's mean
        mean = y[here].mean(0) - base
        r = np.where(n[:, None] > 0, sums / np.maximum(n, 1)[:, None] - base, mean)
        if none is not None:
            r[none] = 0
        rows[k] = r
    return Tables(at, E, rows)


def written(route: Route, sources: list[Part], tables: Tables,
            positions: np.ndarray | None = None) -> np.ndarray:
    """What the route writes at each position (of `positions`, as `tables` was fitted)."""
    out = tables.E[tables.at].copy()
    for k, r in tables.rows.items():
        here = tables.at == k
        codes = sources[route.sources[k]].codes
        codes = codes if positions is None else codes[positions]
        out[here] += r[codes[here]]
    return out


def parts(name: str, route: Route, sources: list[Part], tables: Tables,
          taken: set) -> tuple[MlpReplacement, ...]:
    """The route as the MLP's replacement (its parts, for circuit_program): the bindings
    its lines share (no write), the route (a lookup over its readings' combinations, or the
    reading itself), then a line per class that passes a value on: `x if route == k else
    None`."""
    used = set(taken)
    helpers = {}
    for p in list(route.readings) + [sources[s] for s in route.sources if s >= 0]:
        for h in p.needs:
            helpers.setdefault(h.name, h)
    final = {h.name: _fresh(h.base, used) for h in helpers.values()}

    def named(node):
        return node if node is None else rewrite(node, lambda n, _: ir.Ref(final[n.name])
                                                 if isinstance(n, ir.Ref) and n.name in final
                                                 else n)
    found = [MlpReplacement(final[h.name], h.node, (), None) for h in helpers.values()]
    rep = readback.lookup_replacement(_fresh(f"{name}_route", used),
                                      [named(r.node) for r in route.readings],
                                      [r.basis for r in route.readings], _classes(route),
                                      tables.E)
    ref = rep.ref if rep.ref is not None else ir.Ref(rep.name)
    found.append(rep)
    for k, s in enumerate(route.sources):
        if s < 0 or k not in tables.rows:
            continue
        source = sources[s]
        if isinstance(rep.node, ir.Lookup):
            cond = ir.BinaryOp("==", ref, ir.Const(k))
        else:               # the reading itself: class k is one of its values
            value = next(route.readings[0].basis[c] for c, v in route.combos.items() if v == k)
            cond = ref if value is True else ir.BinaryOp("==", ref, ir.Const(value))
        basis, rows = tuple(source.basis), tables.rows[k]
        if None not in basis:
            basis, rows = basis + (None,), np.vstack([rows, np.zeros((1, rows.shape[1]))])
        label = final[source.needs[0].name] if source.needs else source.name
        found.append(MlpReplacement(_fresh(f"{name}_{label}", used),
                                    ir.Cond(cond, named(source.node), ir.Const(None)), basis,
                                    rows))
    return tuple(found)


def label(route: Route, sources: list[Part]) -> str:
    """The route for the log: its readings, and each class's source."""
    readings = " x ".join(expr(r.node) for r in route.readings)
    passed = ", ".join(f"{k}: {'constant' if s < 0 else sources[s].name}"
                       for k, s in enumerate(route.sources))
    return f"over {readings} ({passed})"
