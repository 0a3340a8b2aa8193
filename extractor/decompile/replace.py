"""Primitives in place of tables: the pruned program made readable, one judged step at a time.

Order (docs/extractor.md, Primitives and replacement):
1. MLPs, layer by layer: each primitive of the library (extractor/decompile/primitives.py, simplest
   first) is applied to the MLP's input variable on the judge's sequences, the write E of the
   new variable is fitted to the MLP's output by least squares (kept only if it explains at
   least 40 % of the output's variance), and the program with the replacement is judged (an
   exact fit, which changes nothing the judge sees, is kept without the floors).
   Where none is kept, the MLP is read back as a lookup over its inputs' readings
   (extractor/decompile/readback.py: the input, `harden(x)`, a threshold `exists(x, v, τ)`),
   one reading first, then two, then three; else, for an MLP that only the logits read, as
   a routed lookup (extractor/decompile/routes.py: small readings choose a class, each class
   writes a constant or passes a value through its own rows), then as a sum of readings each
   written through its own E (`Replacer._read_as_sum`); else it stays an `mlp` and the log
   says why.
2. Score terms and logit terms, in program order: each library primitive that applies to the
   term's bases (the first being deletion) is tried in its place, at @hard_scale.
3. What is left is rounded: to integers, else to one decimal, where that keeps the judgement.

A step is kept when the program still matches the model on at least `floor[bucket]` of the
judge's sequences in every length bucket (the judge has its own seed: the reported evaluation
is made on other sequences). The first acceptable candidate wins, so simpler ones are preferred.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import attrs
import numpy as np
from attrs import define, field, frozen

from extractor.checking.judge import decide, same_decisions
from extractor.decompile import primitives as lib
from extractor.decompile import readback, routes
from extractor.decompile.circuit_program import (
    DROP,
    MlpReplacement,
    circuit_program,
    read_by_logits_only,
    table_names,
)
from extractor.decompile.paths import named_matrix
from extractor.decompile.prune import Layout, used_paths
from rasp_ir import nodes as ir
from rasp_ir.diagnostics import RaspError
from rasp_ir.interpreter import Interpreter, Memo, evaluate
from rasp_ir.passes import INLINE_LIMIT, table_size
from rasp_ir.printer import expr
from rasp_ir.types import basis_of

MIN_EXPLAINED = 0.4          # an MLP primitive must explain this share of the output variance
EXACT = 1e-9                 # a fit whose residual is below this share of the variance is the
                             # MLP's own output at every judged position (rounding aside)


@define
class Replacer:
    circuit: object
    flat: object
    tokens: tuple
    outputs: tuple
    prediction: str | None
    judge: object                 # (program) -> {bucket: match}; .passes(program, floor)
    floor: dict                   # {bucket: the match a replacement must keep}
    bos: str | None = None
    progress: Callable | None = None
    mlp_outputs: dict = field(factory=dict)
    tables: dict = field(factory=dict)
    log: list = field(factory=list)
    # "mlp L" -> the MLP's output beside its primitive's, over the inputs reached (mlp_view)
    views: dict = field(factory=dict)
    judged: int = 0
    memo: Memo = field(factory=Memo)      # the MLP fits' values (the judge keeps its own)

    def build(self, mlp_outputs=None, tables=None) -> ir.Program:
        return circuit_program(self.circuit, self.flat, self.tokens, self.outputs,
                               self.prediction,
                               mlp_outputs=self.mlp_outputs if mlp_outputs is None
                               else mlp_outputs,
                               tables=self.tables if tables is None else tables, bos=self.bos)

    def accepts(self, program: ir.Program) -> tuple[bool, float | None]:
        """(whether every bucket keeps its floor, the worst bucket's match when it does)."""
        self.judged += 1
        try:
            result = self.judge.passes(program, self.floor)
        except RaspError as exc:
            # a candidate the interpreter refuses (a replacement's basis that its type does
            # not have) is a bug to report, not a reason to lose the whole extraction
            first = exc.diagnostics[0]
            self.log.append({"what": "candidate refused", "why": f"{first.code}: {first.message}"})
            return False, None
        return result is not None, (min(result.values()) if result is not None else None)

    def same(self, program: ir.Program) -> tuple[bool, float]:
        """(True, the worst bucket's match) for a program that computes what the current one
        does at every judged position (an MLP replaced by what it writes there, exactly).
        Judged against the floors it could fail: the floor of a bucket the pruned program
        misses is its own match less 0.02, measured on other sequences, and a close pass is
        confirmed on fresh ones, so an unchanged program would be refused about as often as
        the noise goes its way (unique_copy's `m0 = mlp(tokens)`, read exactly as the token,
        was refused so and stayed an mlp)."""
        self.judged += 1
        return True, min(self.judge(program).values())

    def hopeless(self, agreement: float) -> bool:
        """Whether a reading that decides `agreement` of the decision check's sample (fitted
        there, so if anything above what it would be judged) is not worth judging: more than
        HOPELESS below the lowest floor."""
        return agreement < min(self.floor.values()) - HOPELESS

    def say(self, text: str) -> None:
        if self.progress:
            self.progress(text)

    # ------------------------------------------------------------ MLPs

    def replace_mlps(self) -> None:
        g = self.circuit.graph
        layout = Layout(g)
        used = used_paths(layout, self.flat, True)
        for L in range(g.n_layers):
            i = g.mlp_path(L)
            if used[i]:
                self._replace_mlp(L, i)

    def _replace_mlp(self, L: int, index: int) -> None:
        program = self.build()
        name = self.circuit.graph.paths[index].name
        node = next(b.value for b in program.bindings if b.name == name)
        inputs = [i for i in node.inputs if _has_basis(program, i)]
        sequences = [r[0] for rows in self.judge.sets.values() for r in rows]
        interpreter = Interpreter(program)
        out = np.concatenate(evaluate(program, sequences, ir.Ref(name), interpreter=interpreter,
                                      memo=self.memo))                          # (N, D)
        rows, categorical = {}, set()
        for ref in dict.fromkeys(inputs):           # an input read twice is one input
            basis = program_type(program, ref)
            values = evaluate(program, sequences, ref, interpreter=interpreter, memo=self.memo)
            rows[ref] = (_vectors(values, basis), basis)
            if np.asarray(values[0]).ndim == 1:
                categorical.add(ref)
        candidates = []
        if len(node.inputs) == 1 and len(inputs) == 1:
            ref = inputs[0]
            candidates = [(p, (ref,)) for p in lib.mlp_primitives(rows[ref][1])]
        elif len(inputs) == 2 and len(node.inputs) == 2 and set(inputs) <= categorical:
            # the cartesian product of two values; of a distribution it would be a bilinear
            # map, which no MLP computes exactly (the round trip could not compile it)
            a, b = inputs
            candidates = [(p, (a, b)) for p in lib.mlp_pair_primitives(rows[a][1], rows[b][1])]
        for ref in inputs if len(node.inputs) > 1 else []:
            # an MLP reading several variables may use only one of them
            candidates += [(p, (ref,)) for p in lib.mlp_primitives(rows[ref][1])
                           if p.name != "erase"]
        # or route between two of them: `x == y`, `y if y in [specials] else x` (a vector
        # through harden, its largest entry: a head that attends to one key at a time)
        seen = {(p.name, args) for p, args in candidates}
        for a, b in itertools.permutations(dict.fromkeys(inputs), 2):
            for p in lib.mlp_pair_primitives(rows[a][1], rows[b][1]):
                if (p.name == "special_or" or (p.name == "equal" and str(a) < str(b))) \
                        and (p.name, (a, b)) not in seen:
                    candidates.append((p, (a, b)))
        variance = float(out.var(0).sum()) or 1.0
        # or scan a head's values from the token's: `least_above(x, y, …, τ)`, a sort's step
        # (the nearest value above y that x holds more than τ of), with the τ that explains most
        candidates += ordered_candidates(inputs, rows, categorical, out, variance)
        for primitive, args in candidates:
            if primitive.arity == 2:
                (X, bx), (Y, by) = rows[args[0]], rows[args[1]]
                features = primitive.apply(X, bx, Y, by)
                basis = primitive.output_basis(bx, by)
            else:
                X, bx = rows[args[0]]
                features = primitive.apply(X, bx)
                basis = primitive.output_basis(bx)
            if primitive.name in ("equal", "special_or"):
                aligned = typed_rows(program, _pair_node(primitive, args, categorical),
                                     features, basis)
                if aligned is None:
                    continue
                features, basis = aligned
            E, residual = _fit(features, out)
            if 1 - residual / variance < MIN_EXPLAINED:
                continue
            names = [_ref_name(a) for a in args]
            new_name = primitive.variable_name(*names)
            if primitive.name in ("equal", "special_or"):
                expr = _pair_node(primitive, args, categorical)
            else:
                expr = primitive.node(*args)
            if primitive.name == "no_op":
                rep = MlpReplacement(new_name, None, basis, E, args[0])
            else:
                rep = MlpReplacement(new_name, expr, basis, E)
            trial = dict(self.mlp_outputs)
            trial[index] = rep
            exact = residual <= EXACT * variance
            ok, worst = self.same(self.build(mlp_outputs=trial)) if exact else \
                self.accepts(self.build(mlp_outputs=trial))
            if ok:
                self.mlp_outputs = trial
                self.views[f"mlp {L}"] = mlp_view(features, E, out, basis)
                label = "no line (its input)" if rep.node is None else primitive.label(*names)
                self.log.append({"what": f"mlp {L}", "primitive": label, "match": worst,
                                 "explained": round(1 - residual / variance, 4),
                                 **({"exact": True} if exact else {})})
                self.say(f"mlp {L}: {label} (match {worst:.3f})")
                return
        why = self._read_back(L, index, name, rows, categorical, out, variance)
        if why is None:
            return
        routed = self._read_as_routes(L, index, rows, categorical, out, variance)
        if routed is None:
            return
        why.update(routed)
        summed = self._read_as_sum(L, index, rows, categorical, out, variance)
        if summed is None:
            return
        why.update(summed)
        self.log.append({"what": f"mlp {L}", "primitive": None, **why})
        self.say(f"mlp {L}: no primitive or lookup keeps the match; it stays an mlp ({why})")

    def _read_back(self, L: int, index: int, name: str, rows: dict, categorical: set,
                   out: np.ndarray, variance: float) -> dict | None:
        """Read MLP L back as a lookup over its inputs' readings (extractor/decompile/
        readback.py): None when one keeps the match, else why it stays (the inputs, the
        combinations they reach on the judge's sequences, the best fit and its match)."""
        found = []
        for ref, (X, basis) in rows.items():
            found += readback.readings(ref, _ref_name(ref), X, basis, ref in categorical, out,
                                       variance)
        groups = readback.combinations(found, out, variance)
        reached = len(np.unique(np.stack([r.codes for r in found], 1), axis=0)) \
            if found else 0
        why = {"inputs": {_ref_name(r): len(b) for r, (_, b) in rows.items()},
               "readings": len(found), "reached": reached}
        # classes join combinations whose outputs differ by a twentieth of the output's spread
        tolerance = 0.05 * np.sqrt(variance)
        for share, group in groups:
            if share < MIN_EXPLAINED:
                continue
            rep = readback.read_back(name, group, out, tolerance)
            trial = dict(self.mlp_outputs)
            trial[index] = rep
            ok, worst = self.accepts(self.build(mlp_outputs=trial))
            label = " x ".join(expr(r.node) for r in group)
            if ok:
                self.mlp_outputs = trial
                self.views[f"mlp {L}"] = read_back_view(rep, group, out)
                self.log.append({"what": f"mlp {L}", "primitive": f"lookup over {label}",
                                 "classes": len(rep.basis), "match": worst,
                                 "explained": round(share, 4)})
                self.say(f"mlp {L}: lookup over {label}, {len(rep.basis)} classes "
                         f"(match {worst:.3f})")
                return None
            if "best" not in why:
                # the best-explaining failure's match, for the report (one more judging)
                why.update(best=label, explained=round(share, 4),
                           match=round(min(self.judge(self.build(mlp_outputs=trial))
                                           .values()), 4))
        return why

    def _read_as_sum(self, L: int, index: int, rows: dict, categorical: set,
                     out: np.ndarray, variance: float) -> dict | None:
        """Read MLP L as a sum of readings of its inputs, each written to the stream through
        its own fitted E (an MLP that adds what it computes from each input: a count's
        successor of the token plus its end test). Only for an MLP the logits alone read, where
        the parts can be projected one by one. Readings are chosen greedily, at most
        MAX_PARTS, by the model's decisions they reproduce: the logits read the MLP linearly,
        so a sum's logits are the program's others plus its written vector through that
        projection, and a reading that moves few positions but decides many sequences (the
        end of a count) ranks by what it decides, not by the variance it explains. From two
        readings on, each sum is judged, and the first kept wins. None when one is kept,
        else what the largest sum reproduced, with its match (the worst bucket's, on the
        judge's sequences)."""
        if not read_by_logits_only(Layout(self.circuit.graph), self.flat, index):
            return {"sum": "a head or a later MLP reads it"}
        program = self.build()
        name = self.circuit.graph.paths[index].name
        check = DecisionCheck.of(program, name, self.judge, out)
        if check is None:
            return {"sum": "the logits read it through no table"}
        pool = sum_readings(program, rows, categorical)
        chosen, best, last = [], {}, None
        for size in range(1, MAX_PARTS + 1):
            scored = []
            for reading in pool:
                if reading in chosen:
                    continue
                part = np.concatenate([r.features[check.positions] for r in chosen + [reading]],
                                      1)
                E, _ = _fit(part, out[check.positions])
                scored.append((check.agreement(part @ E), reading))
            if not scored:
                break
            agreement, reading = max(scored, key=lambda x: x[0])
            chosen.append(reading)
            if size == 1:
                continue
            features = np.concatenate([r.features for r in chosen], 1)
            E, residual = _fit(features, out)
            share = 1 - residual / variance
            if self.hopeless(agreement[0]):
                best = {"sum": " + ".join(r.label for r in chosen),
                        "sum_explained": round(share, 4),
                        "sum_sample_agreement": round(agreement[0], 4)}
                last = None
                continue
            reps, start = [], 0
            for r in chosen:
                width = r.features.shape[1]
                reps.append(MlpReplacement(r.name, r.node, r.basis, E[start:start + width],
                                           r.ref))
                start += width
            trial = dict(self.mlp_outputs)
            trial[index] = tuple(reps)
            built = self.build(mlp_outputs=trial)
            ok, worst = self.accepts(built)
            label = " + ".join(r.label for r in chosen)
            if ok:
                self.mlp_outputs = trial
                basis = tuple(f"{r.label}={v}" for r in chosen for v in r.basis)
                self.views[f"mlp {L}"] = mlp_view(features, E, out, basis)
                self.log.append({"what": f"mlp {L}", "primitive": f"sum of {label}",
                                 "match": worst, "explained": round(share, 4),
                                 "sample_agreement": round(agreement[0], 4)})
                self.say(f"mlp {L}: sum of {label} (match {worst:.3f})")
                return None
            best = {"sum": label, "sum_explained": round(share, 4),
                    "sum_sample_agreement": round(agreement[0], 4)}
            last = built
        if last is not None:
            # the rejection stopped judging early: its match, for the report (one judging;
            # none for a candidate the interpreter refused, which `accepts` logged)
            try:
                judged = self.judge(last)
                best["sum_match"] = round(min(judged.values()), 4)
            except RaspError:
                pass
        return best

    def _read_as_routes(self, L: int, index: int, rows: dict, categorical: set,
                        out: np.ndarray, variance: float) -> dict | None:
        """Read MLP L as a routed lookup (extractor/decompile/routes.py): a few small
        readings choose a class, each class writes a constant or passes one value on through
        its own table. Only for an MLP the logits alone read (its parts are projected one by
        one). The routes the search ranks best by the model's decisions they reproduce (on
        the decision check's sample) are judged, at most ROUTES_JUDGED; None when one is
        kept, else the best one's figures."""
        if not read_by_logits_only(Layout(self.circuit.graph), self.flat, index):
            return {"route": "a head or a later MLP reads it"}
        program = self.build()
        name = self.circuit.graph.paths[index].name
        check = DecisionCheck.of(program, name, self.judge, out)
        if check is None:
            return {"route": "the logits read it through no table"}
        taken = {b.name for b in program.bindings}
        # a route passes values with a hundred possibilities through their own rows: fitted
        # on the judged sequences alone, a value they reach once or never is written wrong on
        # fresh ones (count's start, judged 0.99 / 1 / 0.95 here, held 0.74 / 0.9 / 0.87), so
        # its rows are fitted on more sequences (after the judged ones: the check's positions
        # still index them)
        rows, out = self._more_positions(program, name, rows, out)
        routers, sources = routes.candidates(rows, categorical, {r: _ref_name(r) for r in rows})
        best = {}
        found = routes.routes(routers, sources, routes.Decisions(check, out))
        for agreement, route in [x for x in found if not self.hopeless(x[0])][:ROUTES_JUDGED]:
            tables = routes.fit(route, sources, out)
            trial = dict(self.mlp_outputs)
            trial[index] = routes.parts(name, route, sources, tables, taken)
            trial[index] = self._typed(trial, index)
            ok, worst = self.accepts(self.build(mlp_outputs=trial))
            label = routes.label(route, sources)
            if ok:
                self.mlp_outputs = trial
                self.views[f"mlp {L}"] = route_view(route, sources, tables, out)
                self.log.append({"what": f"mlp {L}", "primitive": f"route {label}",
                                 "classes": len(route.sources), "match": worst,
                                 "sample_agreement": round(agreement, 4)})
                self.say(f"mlp {L}: route {label} (match {worst:.3f})")
                return None
            if not best:
                best = {"route": label, "route_sample_agreement": round(agreement, 4)}
                try:        # the rejection stopped judging early: its match, for the report
                    judged = self.judge(self.build(mlp_outputs=trial))
                    best["route_match"] = {k: round(v, 4) for k, v in judged.items()}
                except RaspError:
                    pass
        if not best and found:
            best = {"route": routes.label(found[0][1], sources),
                    "route_sample_agreement": round(found[0][0], 4)}
        return best or {"route": "no route decides enough of the sample"}

    def _more_positions(self, program: ir.Program, name: str, rows: dict,
                        out: np.ndarray) -> tuple[dict, np.ndarray]:
        """`rows` and `out` of MLP `name` with FIT_SEQUENCES more sequences per bucket
        appended (drawn from a stream of their own; their tokens only: no model runs)."""
        task = self.judge.task
        rng = np.random.default_rng([FIT_SEED, len(out)])
        sequences = [task.vocab.names(task.sample(rng, lo, hi, offset=False).tokens)
                     for lo, hi in task.test_buckets for _ in range(FIT_SEQUENCES)]
        interpreter = Interpreter(program)
        more = {}
        for ref, (X, basis) in rows.items():
            values = evaluate(program, sequences, ref, interpreter=interpreter)
            more[ref] = (np.concatenate([X, _vectors(values, basis)]), basis)
        written = np.concatenate(evaluate(program, sequences, ir.Ref(name),
                                          interpreter=interpreter))
        return more, np.concatenate([out, written])

    def _typed(self, trial: dict, index: int) -> tuple:
        """The parts of MLP `index` in `trial` with their rows in the order of the basis the
        interpreter gives each (a variable's table rows follow it: `x if c else None` ranges
        over x's values and None, sorted); values no part reached write nothing."""
        program = self.build(mlp_outputs=trial)
        found = []
        for rep in trial[index]:
            if rep.E is not None and rep.node is not None:
                moved = typed_rows(program, ir.Ref(rep.name), rep.E.T, rep.basis)
                if moved is not None:
                    rep = MlpReplacement(rep.name, rep.node, moved[1], moved[0].T, rep.ref)
            found.append(rep)
        return tuple(found)

    # ------------------------------------------------------------ scores and logits

    def replace_tables(self) -> list[str]:
        """Try the library on every table, then once more on those left when the first pass
        labelled or deleted some: a term judged beside another that was deleted later (a
        copy's logits beside a bias that drowned their <eos> vote) can take a label now. The
        names left as tables."""
        first = len(self.tables)
        left = self._replace_tables(table_names(self.build()))
        if left and len(self.tables) > first:
            before = len(self.tables)
            left = self._replace_tables(left)
            if len(self.tables) > before:
                self.say(f"second pass over the tables: {len(self.tables) - before} more")
        return left

    def _replace_tables(self, names: list[str]) -> list[str]:
        left = []
        for name in names:
            if name in self.tables:
                continue
            program = self.build()
            term = _term(program, name)
            if isinstance(term, ir.Project) and tuple(self.outputs) != tuple(self.tokens):
                # a project's predicate ranges `out` over @vocab (the input tokens), not the
                # table's outputs, so any predicate, a position one included, would give logits
                # over another vocabulary than the other terms (E232)
                left.append(name)
                continue
            accepted = None
            for candidate in _candidates(program, term, name):
                trial = dict(self.tables)
                trial[name] = DROP if candidate.uniform else candidate.predicate()
                ok, worst = self.accepts(self.build(tables=trial))
                if ok:
                    self.tables = trial
                    accepted = "deleted" if candidate.uniform else candidate.label()
                    self.log.append({"what": name, "primitive": accepted, "match": worst})
                    self.say(f"{name}: {accepted} (match {worst:.3f})")
                    break
            if accepted is None:
                left.append(name)
        return left

    def round_tables(self, names: list[str]) -> None:
        """Each table to integers, else to one decimal, where the judge keeps the program.
        A table printed on the page (at most INLINE_LIMIT entries) that keeps neither tries
        two decimals: "-3.32" reads, "-3.315780646153292" does not (sort's key-only score,
        154 entries, stayed at full precision). A side-file table is left as it is: its
        digits are not on the page (the comment above its statement gives its largest
        entries to three figures), and each try is a judgement with its confirmations
        (count's 154 x 154 score took 16 s of a 300 s budget)."""
        for name in names:
            program = self.build()
            matrix = _term(program, name).predicate
            values = np.array(matrix.values, dtype=float)
            if table_size(matrix) > INLINE_LIMIT:
                continue
            for decimals in (0, 1, 2):
                rounded = np.round(values, decimals)
                if np.array_equal(rounded, values):
                    break
                trial = dict(self.tables)
                trial[name] = _with_values(matrix, rounded)
                ok, worst = self.accepts(self.build(tables=trial))
                if ok:
                    self.tables = trial
                    self.log.append({"what": name, "primitive": f"rounded to {decimals} "
                                     "decimals", "match": worst})
                    self.say(f"{name}: rounded to {decimals} decimals (match {worst:.3f})")
                    break


def replace(circuit, flat, tokens, outputs, prediction, judge, floor: dict,
            bos: str | None = None, progress=None,
            views: dict | None = None) -> tuple[ir.Program, list, int]:
    """The program with primitives: (program, decisions, programs judged). `views`, when
    given, receives each replaced MLP's `mlp_view` under "mlp L"."""
    r = Replacer(circuit, flat, tokens, outputs, prediction, judge, floor, bos, progress)
    r.replace_mlps()
    left = r.replace_tables()
    r.round_tables(left)
    if views is not None:
        views.update(r.views)
    return r.build(), r.log, r.judged


ROUTES_JUDGED = 3            # the routes of an MLP judged, best first
HOPELESS = 0.1               # a reading deciding this much less of the sample than the lowest
                             # floor is not judged
FIT_SEQUENCES = 200          # more sequences per bucket a route's rows are fitted on
FIT_SEED = 4245
NOISE_SHARES = (0.0, 0.01, 0.03, 0.1)   # output noise an MLP that stays is judged under, as
NOISE_SEED = 4246                       # shares of its spread (the report's `output_noise`;
                                        # 0: the program as it is, for comparison)
MAX_PARTS = 3                # the most readings an MLP is read as the sum of
SUM_SAMPLE = 20_000          # positions the readings of a sum are ranked on


@frozen
class DecisionCheck:
    """The model's decisions beside a program whose logits read an MLP's output linearly, on
    a seeded sample of the judge's sequences (whole sequences, about SUM_SAMPLE positions):
    `agreement(written)` gives what the program would decide with `written` (n, D) in place
    of the MLP's output there, as (sequences agreeing, scored positions agreeing)."""
    positions: np.ndarray        # the sample's indices into the judge's concatenated positions
    rest: np.ndarray             # (n, V) the logits less the MLP's part
    reader: np.ndarray           # (D, V) the projection the logits read the MLP through
    model: np.ndarray            # the model's decisions at the sample's positions
    scored: np.ndarray           # (n,) bool
    starts: np.ndarray           # each sampled sequence's first row in the sample
    mode: str

    @classmethod
    def of(cls, program: ir.Program, name: str, judge, out: np.ndarray):
        """None when no logit term projects `name` through a table."""
        found = _logit_reader(program, name)
        if found is None:
            return None
        logits_name, reader = found
        rows = [r for rs in judge.sets.values() for r in rs]
        ends = np.cumsum([len(r[0]) for r in rows])
        order = np.random.default_rng(0).permutation(len(rows))
        taken, total = [], 0
        for i in order:
            taken.append(int(i))
            total += len(rows[i][0])
            if total >= SUM_SAMPLE:
                break
        taken.sort()
        positions = np.concatenate([np.arange(ends[i] - len(rows[i][0]), ends[i])
                                    for i in taken])
        logits = np.concatenate(evaluate(program, [rows[i][0] for i in taken],
                                         ir.Ref(logits_name)))
        rest = logits - out[positions] @ reader
        starts = np.cumsum([0] + [len(rows[i][0]) for i in taken[:-1]])
        return cls(positions, rest, reader, np.concatenate([rows[i][1] for i in taken]),
                   np.concatenate([rows[i][3] for i in taken]).astype(bool), starts,
                   judge.task.mode)

    def same_at(self, where, part: np.ndarray) -> np.ndarray:
        """Per position of the sample's `where` (indices, or a slice): decided as the model
        decides it, or not scored, with `part` (len(where), V) as the MLP's part of the
        logits there."""
        return same_decisions(decide(self.rest[where] + part, self.mode), self.model[where],
                              self.mode) | ~self.scored[where]

    def agreement(self, written: np.ndarray) -> tuple[float, float]:
        ok = self.same_at(slice(None), written @ self.reader)
        return (float(np.logical_and.reduceat(ok, self.starts).mean()),
                float(ok[self.scored].mean()) if self.scored.any() else 1.0)


def _logit_reader(program: ir.Program, name: str) -> tuple[str, np.ndarray] | None:
    """(the logits' binding, the matrix (D, V) it projects variable `name` through)."""
    for b in program.bindings:
        terms = b.value.terms if isinstance(b.value, ir.LogitsSum) else (b.value,)
        for t in terms:
            if isinstance(t, ir.Project) and t.operand == ir.Ref(name) and \
                    isinstance(t.predicate, ir.Matrix) and t.predicate.cols is not None:
                return b.name, np.asarray(t.predicate.values, dtype=float)
    return None


@frozen
class SumReading:
    """One part of an MLP read as a sum: `node` computes it (None: the input `ref` itself,
    read as it is), `features` are its rows on the judge's positions over `basis`."""
    name: str
    label: str
    node: ir.Node | None
    ref: ir.Node | None
    basis: tuple
    features: np.ndarray = field(eq=False, repr=False)


def ordered_candidates(inputs: list, rows: dict, categorical: set, out: np.ndarray,
                       variance: float) -> list:
    """least_above and greatest_below of each input x from each categorical input y, each
    at the threshold whose fit explains most of the output (one judgement per direction,
    not one per threshold)."""
    found = []
    for a, b in itertools.permutations(dict.fromkeys(inputs), 2):
        if b not in categorical:
            continue
        (X, bx), (Y, by) = rows[a], rows[b]
        best = {}
        for p in lib.ordered_primitives(bx, by):
            share = 1 - _fit(p.apply(X, bx, Y, by), out)[1] / variance
            if share > best.get(p.name, (-1.0, None))[0]:
                best[p.name] = (share, p)
        found += [(p, (a, b)) for share, p in best.values() if share >= MIN_EXPLAINED]
    return found


def sum_readings(program: ir.Program, rows: dict, categorical: set) -> list[SumReading]:
    """The readings a sum is made of: each input as it is (a one-hot categorical, or a
    distribution), each distribution hardened to its largest entry, and between two inputs
    the comparison `x == y` and the routing `y if y in [specials] else x` (a distribution
    hardened first, as those compare values)."""
    found = []
    for ref, (X, basis) in rows.items():
        label = _ref_name(ref)
        found.append(SumReading(label, label, None, ref, tuple(basis), X))
        if ref not in categorical:
            harden = lib.MlpPrimitive("harden", "hardened")
            found.append(SumReading(harden.variable_name(label), harden.label(label),
                                    harden.node(ref), None, harden.output_basis(basis),
                                    harden.apply(X, basis)))
    for a, b in itertools.permutations(rows, 2):
        (X, bx), (Y, by) = rows[a], rows[b]
        for p in lib.mlp_pair_primitives(bx, by):
            if p.name == "special_or" or (p.name == "equal" and str(a) < str(b)):
                names = (_ref_name(a), _ref_name(b))
                node = _pair_node(p, (a, b), categorical)
                aligned = typed_rows(program, node, p.apply(X, bx, Y, by),
                                     p.output_basis(bx, by))
                if aligned is not None:
                    found.append(SumReading(p.variable_name(*names), p.label(*names), node,
                                            None, aligned[1], aligned[0]))
    return found


def _pair_node(primitive, args: tuple, categorical: set) -> ir.Node:
    """`x == y` or `y if y in [specials] else x` over two inputs; they compare values, so a
    distribution is read as its largest entry (`harden`)."""
    return primitive.node(*(a if a in categorical else ir.Primitive("harden", (a,))
                            for a in args))


def typed_rows(program: ir.Program, node: ir.Node, features: np.ndarray,
               basis: tuple) -> tuple[np.ndarray, tuple] | None:
    """`features` (N, |basis|) moved onto the basis the interpreter gives `node`, in its order
    (a variable's table rows follow that basis); the type may hold values the data never
    reaches (`y if y in [specials] else x` ranges over all of y's, specials or not), whose
    columns stay 0. None when the type lacks one of `basis`'s values."""
    typed = basis_of(Interpreter(program).type_of(node))
    if typed is None:
        return None
    typed = tuple(typed)
    if typed == tuple(basis):
        return features, typed
    index = {v: i for i, v in enumerate(typed)}
    if any(v not in index for v in basis):
        return None
    moved = np.zeros((len(features), len(typed)))
    moved[:, [index[v] for v in basis]] = features
    return moved, typed


MAX_VIEW_ROWS = 48           # the most frequent inputs a view keeps


def mlp_view(features: np.ndarray, E: np.ndarray, out: np.ndarray, basis: tuple) -> dict:
    """What a person compares to believe a replacement (`rasp report`): over the judge's
    positions grouped by the primitive's value there (the inputs reached), the MLP's mean
    output and the primitive's write `features @ E`, each (groups, d_model), with the group
    labels and how many positions reached each; the most frequent groups first."""
    keys, inverse, counts = np.unique(np.round(features, 6), axis=0, return_inverse=True,
                                      return_counts=True)
    inverse = inverse.reshape(-1)
    order = np.argsort(-counts, kind="stable")[:MAX_VIEW_ROWS]
    means = _group_means(inverse, counts, out)
    return {"labels": [_view_label(keys[g], basis) for g in order],
            "model": means[order], "primitive": keys[order] @ E,
            "count": counts[order].astype(float)}


def _group_means(inverse: np.ndarray, counts: np.ndarray, out: np.ndarray) -> np.ndarray:
    """The mean row of `out` in each group (`inverse`: each position's group)."""
    sums = np.zeros((len(counts), out.shape[1]))
    np.add.at(sums, inverse, out)
    return sums / counts[:, None]


def read_back_view(rep, group: tuple, out: np.ndarray) -> dict:
    """`mlp_view` of an MLP read back as a lookup over readings (readback.read_back): the
    positions grouped by their readings' combination, the MLP's mean output beside the
    lookup's write (the vector of the class the combination is given)."""
    index = np.zeros(len(out), dtype=np.int64)
    for r in group:
        index = index * len(r.basis) + r.codes         # row-major, as read_back numbers them
    if isinstance(rep.node, ir.Lookup):
        write = rep.E[np.asarray(rep.node.values, dtype=np.int64)[index]]
    elif len(rep.E) == 1:                                  # one class: a constant
        write = np.repeat(rep.E, len(out), axis=0)
    else:                                                  # the reading itself, per value
        write = rep.E[group[0].codes]
    keys, first, inverse, counts = np.unique(index, return_index=True, return_inverse=True,
                                             return_counts=True)
    inverse = inverse.reshape(-1)
    order = np.argsort(-counts, kind="stable")[:MAX_VIEW_ROWS]
    means = _group_means(inverse, counts, out)
    labels = [", ".join(str(r.basis[r.codes[first[g]]]) for r in group) for g in order]
    return {"labels": labels, "model": means[order], "primitive": write[first[order]],
            "count": counts[order].astype(float)}


def route_view(route, sources: list, tables, out: np.ndarray) -> dict:
    """`mlp_view` of an MLP read as a route: the positions grouped by class and passed
    value, the MLP's mean output beside the route's write there."""
    passed = np.zeros(len(out), dtype=np.int64)
    for k, s in enumerate(route.sources):
        if s >= 0:
            here = tables.at == k
            passed[here] = sources[s].codes[here]
    key = tables.at * (1 + int(passed.max())) + passed
    keys, first, inverse, counts = np.unique(key, return_index=True, return_inverse=True,
                                             return_counts=True)
    inverse = inverse.reshape(-1)
    order = np.argsort(-counts, kind="stable")[:MAX_VIEW_ROWS]
    means = _group_means(inverse, counts, out)
    write = routes.written(route, sources, tables)

    def label(i):
        k = int(tables.at[i])
        s = route.sources[k]
        return f"{k}" if s < 0 else f"{k}: {sources[s].basis[passed[i]]}"
    return {"labels": [label(first[g]) for g in order], "model": means[order],
            "primitive": write[first[order]], "count": counts[order].astype(float)}


def _view_label(row: np.ndarray, basis: tuple) -> str:
    """A primitive's value as a label: its basis value when one-hot, else its largest
    entries."""
    if len(basis) == len(row):
        if np.isclose(row.sum(), 1) and np.isclose(row.max(), 1):
            return str(basis[int(row.argmax())])
        top = np.argsort(-np.abs(row), kind="stable")[:2]
        return ", ".join(f"{basis[i]}:{row[i]:.2f}" for i in top)
    return " ".join(f"{v:.2g}" for v in row[:3])


# ------------------------------------------------------------------ helpers


def with_output_noise(program: ir.Program, name: str, sequences: list, variance: float,
                      shares: tuple, seed, memo: Memo | None = None) -> list[ir.Program]:
    """`program` with noise in the output of the `mlp` bound to `name`, one program per share:
    random normal noise in its output weights, scaled so that what it adds to the output has
    a root mean square (over `sequences`' positions, of the whole vector) of `share` times
    the output's spread √`variance`. Noise in the weights, not per position, keeps each
    program a plain `mlp` the interpreter runs. [] when `name` is not an `mlp`."""
    node = next(b.value for b in program.bindings if b.name == name)
    if not isinstance(node, ir.Mlp):
        return []
    W_out = np.asarray(node.W_out.values, dtype=float)
    M = W_out.shape[0]
    # the hidden activations: the same node writing them out through an identity
    hidden = attrs.evolve(node, W_out=named_matrix(f"{name}.hidden", range(M), range(M),
                                                   np.eye(M)),
                          b_out=named_matrix(f"{name}.no_bias", range(M), None, np.zeros(M)))
    h = np.concatenate(evaluate(program, sequences, hidden, memo=memo))
    noise = np.random.default_rng(seed).normal(size=W_out.shape)
    unit = float(np.sqrt(np.mean(np.sum((h @ noise) ** 2, 1))))      # the RMS of h @ noise
    if unit == 0:                   # no unit is ever active: the output is a constant
        return []
    found = []
    for share in shares:
        if share == 0:              # the program as it is (its values are in the memos)
            found.append(program)
            continue
        W = W_out + noise * (share * np.sqrt(variance) / unit)
        noisy = attrs.evolve(node, W_out=named_matrix(f"{name}.W_out+noise", range(M),
                                                      node.W_out.cols, W))
        found.append(attrs.evolve(program, bindings=tuple(
            attrs.evolve(b, value=noisy) if b.name == name else b for b in program.bindings)))
    return found


def program_type(program: ir.Program, ref: ir.Node) -> tuple:
    """The basis of a variable of the program (token, pos, aggregates, primitives)."""
    return tuple(basis_of(Interpreter(program).type_of(ref)))


def _has_basis(program: ir.Program, ref: ir.Node) -> bool:
    """Whether an MLP input is a variable over meaningful values (not an opaque MLP)."""
    name = _ref_name(ref)
    for b in program.bindings:
        if b.name == name:
            return not isinstance(b.value, ir.Mlp)
    return True                  # token, pos


def _ref_name(ref: ir.Node) -> str:
    if isinstance(ref, ir.Ref):
        return ref.name
    return "token" if isinstance(ref, ir.Tokens) else "pos"


def _vectors(values: list, basis: tuple) -> np.ndarray:
    """Per-position rows over `basis`: one-hot for categorical values, as they are for vecs."""
    rows = np.concatenate([np.asarray(v) for v in values])
    if rows.ndim == 2:
        return rows.astype(float)
    index = {v: i for i, v in enumerate(basis)}
    codes = np.array([index[v.item() if hasattr(v, "item") else v] for v in rows])
    return np.eye(len(basis))[codes]


def _fit(features: np.ndarray, out: np.ndarray) -> tuple[np.ndarray, float]:
    """Least-squares E with features @ E ≈ out; (E, residual sum of squares per column).
    Solved through the Gram matrix (features are a few hundred columns over tens of
    thousands of positions, mostly 0/1: well conditioned, and 5.5x faster than an SVD of the
    tall matrix on a 60,000 x 154 one-hot fit); its pseudo-inverse gives the same
    minimum-norm E when columns repeat."""
    E, *_ = np.linalg.lstsq(features.T @ features, features.T @ out, rcond=None)
    residual = float(((features @ E - out) ** 2).mean(0).sum())
    return E, residual


def _term(program: ir.Program, name: str):
    for b in program.bindings:
        for node in ir.walk(b.value):
            if isinstance(node, (ir.Select, ir.Project)) and \
                    isinstance(node.predicate, ir.Matrix) and node.predicate.name == name:
                return node
    raise KeyError(name)


def _candidates(program: ir.Program, term, name: str) -> list:
    """The library primitives that apply to a term's bases, simplest first: the fixed ones,
    then those over positions whose parameters are read from the table's values."""
    m = term.predicate
    rows = tuple(m.rows)
    cols = tuple(m.cols) if m.cols is not None else None
    values = np.asarray(m.values, dtype=float)
    if isinstance(term, ir.Select):
        if term.queries is not None:
            library = lib.attention_primitives() + \
                lib.position_attention_primitives(values, rows, cols) + \
                lib.token_attention_primitives(values, rows, cols, program.vocab)
        else:
            library = lib.key_primitives() + lib.position_key_primitives(values, rows)
        return [p for p in library if _applies(p, rows if cols is not None else None,
                                               cols if cols is not None else rows)]
    if term.operand is None:
        return [p for p in lib.bias_primitives() if _applies(p, None, rows)]
    if None in rows and len(rows) > 1:
        return _none_silent_candidates(program, values, rows, cols)
    library = lib.logit_primitives() + lib.position_logit_primitives(values, rows, cols) + \
        lib.token_logit_primitives(values, rows, cols, program.vocab) + \
        lib.vote_logit_primitives(values, rows, cols)
    return [p for p in library if _applies(p, rows, cols)]


def _none_silent_candidates(program: ir.Program, values: np.ndarray, rows: tuple,
                            cols: tuple) -> list:
    """The logit candidates of a variable that is None where it does not apply (a route's
    line `x if route == k else None`): those naming None as they are, the others read off
    the other rows, with None voting for nothing (as they are where they already give it
    no vote, `inp == out`, else wrapped: `(False if inp == None else …)`)."""
    keep = [i for i, r in enumerate(rows) if r is not None]
    plain = tuple(rows[i] for i in keep)
    m = values.reshape(len(rows), len(cols))[keep]
    found = [p for p in lib.logit_primitives() if p.none_rows and _applies(p, rows, cols)]
    for p in lib.logit_primitives() + lib.position_logit_primitives(m, plain, cols) + \
            lib.token_logit_primitives(m, plain, cols, program.vocab) + \
            lib.vote_logit_primitives(m, plain, cols):
        if p.none_rows or not _applies(p, plain, cols):
            continue
        try:
            whole = p.matrix(rows, cols)
        except (KeyError, TypeError, ValueError):
            whole = None
        silent = whole is not None and not whole[rows.index(None)].any()
        found.append(p if silent or p.uniform else lib.silent_none(p))
    return found


def _applies(primitive, rows, cols) -> bool:
    try:
        return primitive.matrix(rows, cols) is not None
    except ValueError:
        return False


def _with_values(matrix: ir.Matrix, values: np.ndarray) -> ir.Matrix:
    if matrix.cols is None:
        return ir.Matrix(matrix.rows, None, tuple(values.tolist()), name=matrix.name)
    return ir.Matrix(matrix.rows, matrix.cols, tuple(map(tuple, values.tolist())),
                     name=matrix.name)
