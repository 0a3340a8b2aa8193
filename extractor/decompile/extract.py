"""`rasp extract`: a checkpoint to a program, with what it measured along the way.

The default stage on a trained checkpoint (`extract_program`) reads as its stages: LLN-A
(`linearise`), the sparsity sweep of pruning runs (`sweep`, `prune`), then for the smallest
passing runs the circuit as a program (`circuit_program`), primitives in place of tables
(`replace`), simplification and names (`rasp_ir.passes`), and the held-out judgement
(`extractor.checking.judge`). LLN-A's faithfulness and the judges' sets are computed while
the sweep runs (`meanwhile`), and the LayerNorm diagnosis after it, only where the runs
confirm that LLN-A fails. Stage "full" (`extract_full`) is LLN-A and the exact path program
(`paths`). Models written by `rasp compile` go through `compiled`. `write_extraction` writes the
program, its tables and its report, after the `--verify` round trip when asked.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import attrs
import numpy as np
from attrs import frozen

from extractor.checking.judge import Judge, SequentialJudge
from extractor.checking.roundtrip import round_trip
from extractor.checking.threads import one_thread
from extractor.decompile import layernorm, linearise, stated
from extractor.decompile.circuit import Circuit
from extractor.decompile.circuit_program import circuit_program
from extractor.decompile.meanwhile import Meanwhile
from extractor.decompile.paths import MAX_ENTRIES, full_program, size
from extractor.decompile.prune import PruneSettings
from extractor.decompile.primitives import SPECIALS
from extractor.decompile.readout import read_out
from extractor.decompile.replace import NOISE_SEED, NOISE_SHARES, replace, with_output_noise
from extractor.decompile.report import (Evaluation, FullReport, ModelShape, ProgramSummary,
                                        PrunedReport, Report)
from extractor.decompile.sweep import (RunCache, RunSpec, Search, capacity, frontier, grid_for,
                                       local_executor, sweep_all, worst_match)
from extractor.tasks.checkpoint import Subject
from rasp_ir import nodes as ir
from rasp_ir import passes
from rasp_ir.diagnostics import Diagnostic, RaspError
from rasp_ir.files import atomic_write_text
from rasp_ir.interpreter import evaluate
from rasp_ir.tables import write_program, write_tables


@frozen
class Extraction:
    program: ir.Program
    report: Report
    # "mlp L" -> replace.mlp_view of each MLP a primitive replaced (PROG.mlps.safetensors)
    mlp_views: dict | None = None


@frozen
class ExtractSettings:
    """The default stage of `rasp extract`: prune, replace by primitives, simplify."""
    threshold: float = 0.9       # match wanted in every length bucket
    workers: int = 2             # pruning runs at once
    seed: int = 0
    n: int = 1000                # held-out sequences per bucket for the reported numbers
    selection: int = 100         # sequences per bucket judging choices (their own seed)
    max_runs: int = 8            # pruning runs in the sparsity sweep
    max_lines: int = 25          # the size limit of a program worth having
    candidates: int = 3          # sweep runs taken through replacement before giving up
    margin: float = 0.02         # replacements keep the choice set's match this far above
    # choice sequences per bucket after each confirmation of a close decision (judge.py,
    # SequentialJudge)
    confirm: tuple = (400, 1600)
    quick: bool = False          # fewer, shorter runs (the README's example)
    device: str = "cpu"          # where pruning runs and the model's predictions compute
    # a pruning stage ends once its masks are this many steps still (0: never); on by default
    # since the replacement step no longer grows with a large circuit (docs/extractor.md)
    early_stop: int = 50
    # answer positions a pruning step scores, drawn afresh each step (0: every one): the mean
    # KL over a sample estimates the mean over all, and the last layer's work, most of a step
    # on long answers, shrinks with it. Off by default: the noisier steps changed which
    # circuit the sweep chose on unique_copy and count (docs/extractor.md)
    answer_positions: int = 0

    def prune_settings(self) -> PruneSettings:
        if self.quick:
            return PruneSettings(steps=(150, 100, 100), pool=12, selection=32,
                                 patience=self.early_stop, positions=self.answer_positions)
        return PruneSettings(patience=self.early_stop, positions=self.answer_positions)


# ------------------------------------------------------------------ the pruned program

def extract_program(subject: Subject, checkpoint: str | Path, task_spec: str | None,
                    runs_dir: Path, settings: ExtractSettings = ExtractSettings(),
                    executor=None, progress=None) -> Extraction:
    """The short program of a trained checkpoint, and its report. `progress(text)` hears
    about each step, `progress(text, done=i, total=n)` about pruning run i of at most n.
    `executor`: any concurrent.futures.Executor for the pruning runs (default: a local
    process pool of `settings.workers`)."""
    target = Target(subject, checkpoint, task_spec, runs_dir)
    return extract_programs([target], settings, executor, progress)[0]


@frozen
class Target:
    """One checkpoint of `extract_programs`: its subject, where it is, its task spec (None:
    its own) and its run cache."""
    subject: Subject
    checkpoint: str | Path
    task_spec: str | None
    runs_dir: Path


def extract_programs(targets: list[Target], settings: ExtractSettings = ExtractSettings(),
                     executor=None, progress=None) -> list[Extraction]:
    """Several checkpoints in one sweep: LLN-A for each, then all their pruning runs on one
    executor (as many at once as it has workers), then each one's primitives and held-out
    judgement. Progress lines name the checkpoint when there are several."""
    prepared = []
    for target in targets:
        say = _named(progress, target, len(targets))
        _needs_task(target.subject)
        clock = _Stopwatch()
        scales, linear, lln = _linearise(target.subject, settings, say)
        clock.lap("lln_a")
        base = RunSpec(str(Path(target.checkpoint).resolve()), target.task_spec, scales,
                       _plain(settings.prune_settings().to_dict()), settings.seed, 0.0,
                       settings.device)
        prepared.append((target, say, clock, linear, lln, base))
    started = time.perf_counter()
    with Meanwhile() as meanwhile:
        ahead = [meanwhile.submit(_ahead_of_judging, p[0].subject, settings, p[3], p[4])
                 for p in prepared]
        all_runs = _sweep([p[5] for p in prepared], [t.runs_dir for t in targets], settings,
                          executor, [p[1] for p in prepared])
        pruning = round(time.perf_counter() - started, 2)
    waited = round(time.perf_counter() - started - pruning, 2)
    out = []
    for (target, say, clock, linear, lln, base), runs, done in zip(prepared, all_runs, ahead):
        clock.seconds["pruning"] = pruning        # the shared sweep's time
        judges, clock.seconds["meanwhile"] = done.result()
        clock.seconds["waited"] = waited          # for the meanwhile work, after the sweep
        clock.last = time.perf_counter()
        _diagnose(lln, target.subject.model, base.scales, target.subject.task,
                  settings.threshold, settings.seed, say, runs)
        clock.seconds["lln_a"] += round(time.perf_counter() - clock.last, 2)
        clock.last = time.perf_counter()
        found = _finish(target.subject, settings, say, clock, linear, lln, base, runs,
                        target.runs_dir, judges)
        if not found.report.reached_threshold:
            # where LLN-A fails (the paper's test: no run's first stage reaches the
            # threshold) and the pruned programs fall short, the final LayerNorm stated
            found = _stated(target.subject, settings, say, clock, lln, runs, found) or found
        out.append(found)
    return out


def _ahead_of_judging(subject: Subject, settings: ExtractSettings, linear, lln: dict | None):
    """What the extraction needs after the sweep but not before it, computed while the sweep
    runs (meanwhile.py): LLN-A's faithfulness with the estimated scales (a report figure;
    the diagnosis waits for the runs) into `lln`, and the judges with the model's decisions
    on their sequences. ((choice judge, held-out judge), seconds taken)."""
    started = time.perf_counter()
    model, task = subject.model, subject.task
    if lln is not None:
        lln["faithfulness"] = linearise.faithfulness(model, linear, task,
                                                     n=min(settings.n, 500), seed=settings.seed)
    chooser = SequentialJudge(model, task, settings.selection, settings.seed, settings.device,
                              settings.confirm)
    held_out = Judge.held_out(model, task, settings.n, settings.seed, settings.device)
    return (chooser, held_out), round(time.perf_counter() - started, 2)


def lln_a_holds(runs: list[dict], threshold: float) -> bool:
    """The paper's test of LLN-A (docs/layernorm.md): some pruning run's first stage (the
    components, with the LayerNorm scales learned per reader) matches the model on at least
    `threshold` of the selection sequences of every bucket."""
    return any(min(s["stages"][0]["match"].values()) >= threshold for s in runs
               if s["stages"])


def _stated(subject, settings, say, clock, lln, runs, pruned: Extraction) -> Extraction | None:
    """Where LLN-A loses the model (`lln` holds a diagnosis, and no pruning run's first stage
    reaches the threshold) and no pruned program (`pruned`, the best found) reaches the
    threshold: the final LayerNorm stated in the program (stated.py), judged on the choice
    set and then the held-out sets. The extraction when it reaches the threshold within the
    size limit (its report lists the pruned candidates, then this one), else None; either
    way `lln["stated"]` says what was tried."""
    if not lln or "diagnosis" not in lln or lln_a_holds(runs, settings.threshold):
        return None
    model, task = subject.model, subject.task
    with one_thread():
        chooser = SequentialJudge(model, task, settings.selection, settings.seed,
                                  settings.device, settings.confirm)
        floor = {b: settings.threshold + settings.margin for b in chooser.sets}
        judged = [0]

        def accepts(candidate):
            judged[0] += 1
            result = chooser.passes(candidate, floor)
            return result is not None, (min(result.values()) if result is not None else None)

        program, entry = stated.stated_program(subject, accepts, settings.seed, say)
        lln["stated"] = entry
        if program is None:
            say(f"stated LayerNorm: {entry['why']}")
            return None
        result = Judge.held_out(model, task, settings.n, settings.seed, settings.device)(
            program, task_accuracy=True)
    lines = program_lines(program)
    worst = min(r["match"] for r in result.values())
    entry["held_out_worst"] = worst
    entry["kept"] = worst >= settings.threshold and lines <= settings.max_lines
    if not entry["kept"]:
        say(f"stated LayerNorm: held-out worst-bucket match {worst:.3f} in {lines} lines")
        return None
    say(f"stated LayerNorm: {lines} lines, held-out worst-bucket match {worst:.3f}")
    clock.lap("stated")
    chosen = {"lam": None, "lines": lines, "buckets": result,
              "choice": chooser.measure(program, settings.threshold),
              "confirmations": chooser.confirmations, "replacements": [entry],
              "programs_judged": judged[0]}
    clock.lap("total", since_start=True)
    tried = list(pruned.report.candidates) + [chosen]
    return Extraction(program, _pruned_report(subject, settings, lln, runs, tried, chosen,
                                              program, True, clock.seconds))


def _named(progress, target: Target, count: int):
    """`progress` with the checkpoint's name before each line when there are several."""
    say = progress or _silent
    if count == 1:
        return say
    name = Path(target.checkpoint).name

    def named(text, done=None, total=None):
        if done is None:
            say(f"{name}: {text}")
        else:
            say(f"{name}: {text}", done=done, total=total)
    return named


def _finish(subject, settings, say, clock, linear, lln, base, runs, runs_dir,
            judges=None) -> Extraction:
    """The sweep's runs through primitives and judgement: the extraction of one checkpoint.
    `judges`: (choice judge, held-out judge) built already (else built here)."""
    with one_thread():
        tried, chosen = _choose(candidate_order(runs, settings.threshold), subject, linear,
                                base, runs_dir, settings, say, clock.seconds, judges)
    clock.lap("primitives")
    reached = chosen is not None
    chosen = chosen or best_found(tried)
    program = chosen.pop("_program")
    views = chosen.pop("_views", None)
    for entry in tried:
        entry.pop("_program", None)
        entry.pop("_views", None)
    clock.lap("total", since_start=True)
    return Extraction(program, _pruned_report(subject, settings, lln, runs, tried, chosen,
                                              program, reached, clock.seconds), views)


def _needs_task(subject: Subject) -> None:
    if subject.task is None:
        raise RaspError([Diagnostic(
            "X504", "sweep pruning needs task data, and a compiled model has no task",
            hint="a compiled model is extracted by extractor.decompile.compiled.extract_compiled "
            "(what `rasp extract` runs for it)")])


def _linearise(subject: Subject, settings: ExtractSettings, say):
    """LLN-A: (scales, the linearised model, its section of the report or None). Pruning
    learns the scales further, per reader; these are where it starts."""
    model, task = subject.model, subject.task
    if not linearise.layer_norms(model):
        return {}, model, None
    say("estimating LayerNorm scales")
    scales = linearise.estimate_scales(model, task, seed=settings.seed)
    linear = linearise.linearised(model, scales)
    # "faithfulness" is measured while the sweep runs (_ahead_of_judging)
    lln = {"estimated_scales": scales,
           "note": "the scales are learned further, per reader, while pruning"}
    return scales, linear, lln


def _diagnose(lln: dict | None, model, scales, task, threshold: float, seed: int, say,
              runs: list[dict] | None = None) -> None:
    """Where LLN-A (scales fixed, before pruning) is below the threshold and the pruning runs
    confirm it (`lln_a_holds`): which LayerNorm's constant loses the model
    (layernorm.diagnose), into `lln["diagnosis"]`. Where a run's first stage reaches the
    threshold, the per-reader scales it learned recover the model: `lln["diagnosis"]` is then
    not computed (19 s of sort's extraction), and
    `lln["not_diagnosed"]` says why."""
    if not lln or layernorm.worst(lln["faithfulness"]) >= threshold:
        return
    if runs is not None and lln_a_holds(runs, threshold):
        best = max(min(s["stages"][0]["match"].values()) for s in runs if s["stages"])
        lln["not_diagnosed"] = (f"a pruning run's first stage matches the model on {best:.3f} "
                                f"of the worst bucket (the paper's test of LLN-A passes)")
        return
    say(f"LLN-A keeps the model on less than {threshold} of some bucket: finding the "
        "LayerNorm(s) at fault")
    lln["diagnosis"] = layernorm.diagnose(model, scales, task, lln["faithfulness"], threshold,
                                          seed=seed, progress=say)


def _sweep(bases: list[RunSpec], runs_dirs: list[Path], settings: ExtractSettings, executor,
           says: list) -> list[list]:
    """Per checkpoint, every pruning run's summary (cached ones too), in the order they
    finished. The first round has as many λ as the executor has workers (at least the grid's
    three; quick: two), and so has every later one (at least two)."""
    own = executor is None
    executor = executor or local_executor(settings.workers)
    workers = capacity(executor)
    most = 3 if settings.quick else settings.max_runs
    grid = grid_for(workers, settings.quick, most)
    searches = [Search(base, runs_dir, settings.threshold, most, grid, max(2, workers))
                for base, runs_dir in zip(bases, runs_dirs)]
    count = [0] * len(searches)

    def heard(i, summary):
        count[i] += 1
        st = summary["stages"]
        says[i](f"pruning run: λ={summary['lam']:.2g} edges "
                + "→".join(str(s["edges"]) for s in st)
                + f", worst-bucket match {min(st[-1]['match'].values()):.3f}",
                done=count[i], total=max(most, count[i]))

    try:
        return sweep_all(searches, executor, heard)
    finally:
        if own:
            executor.shutdown(cancel_futures=True)


def candidate_order(runs: list[dict], threshold: float) -> list[dict]:
    """The runs to take through primitives: those passing on the choice set, fewest edges
    first; when none passes, the best worst bucket first. Ties go to the larger λ: the order
    the runs finished in (parallel workers) must not decide."""
    passing = [s for s in runs if worst_match(s) >= threshold]
    if passing:
        return sorted(passing, key=lambda s: (s["stages"][-1]["edges"], -worst_match(s),
                                              -s["lam"]))
    return sorted(runs, key=lambda s: (-worst_match(s), s["stages"][-1]["edges"], -s["lam"]))


def _choose(order, subject, linear, base, runs_dir, settings, say, seconds=None,
            judges=None):
    """Take the sweep's runs in `order` through primitives and simplification until one
    matches the model on the held-out sets; (every candidate tried, the chosen one or None).
    seconds["judging"] receives the judges' time (part of the primitives step's; judges
    built while the sweep ran count from there)."""
    model, task = subject.model, subject.task
    chooser, held_out = judges or (
        SequentialJudge(model, task, settings.selection, settings.seed, settings.device,
                        settings.confirm),
        Judge.held_out(model, task, settings.n, settings.seed, settings.device))
    before = chooser.seconds + held_out.seconds if judges else 0.0
    try:
        return _try_candidates(order, subject, linear, base, runs_dir, settings, say, chooser,
                               held_out)
    finally:
        if seconds is not None:
            seconds["judging"] = round(chooser.seconds + held_out.seconds - before, 2)


def _try_candidates(order, subject, linear, base, runs_dir, settings, say, chooser, held_out):
    tried = []
    for summary in order[:settings.candidates]:
        views: dict = {}
        confirmed = chooser.confirmations
        program, log, judged = readable_program(subject, linear, base, summary, runs_dir,
                                                chooser, settings, say, views)
        result = held_out(program, task_accuracy=True)
        lines = program_lines(program)
        worst = min(r["match"] for r in result.values())
        entry = {"lam": summary["lam"], "lines": lines, "buckets": result,
                 "choice": chooser.measure(program, settings.threshold),
                 "confirmations": chooser.confirmations - confirmed,
                 "replacements": log, "programs_judged": judged, "_program": program,
                 "_views": views}
        tried.append(entry)
        say(f"λ={summary['lam']:.2g}: {lines} lines, held-out worst-bucket match {worst:.3f}")
        if worst >= settings.threshold and lines <= settings.max_lines:
            return tried, entry
    return tried, None


def readable_program(subject, linear, base, summary, runs_dir, judge, settings, say,
                     views: dict | None = None):
    """A sweep run's circuit as a program, with primitives, simplified and named:
    (program, replacements made, programs judged); `views` receives the replaced MLPs'
    views (replace.mlp_view)."""
    circuit, flat = _pruned_circuit(linear, RunCache(runs_dir).tensors(
        attrs.evolve(base, lam=summary["lam"])))
    program = circuit_program(circuit, flat, subject.tokens, subject.outputs,
                              subject.prediction, bos=subject.bos)
    # a bucket above the threshold stays above it (with a margin for the held-out sets); a
    # bucket below it (a model the circuit does not capture there) loses at most 0.02
    keep = settings.threshold + settings.margin
    # measured on up to 400 sequences where close to `keep` (the circuit's opaque MLPs make
    # the interpreter slow; the floors need not be as sharp as the decisions)
    start = {b: r["match"] for b, r in judge.measure(program, keep, stages=1).items()}
    floor = {b: keep if m >= keep else m - 0.02 for b, m in start.items()}
    say(f"λ={summary['lam']:.2g}: primitives (pruned program's worst-bucket match "
        f"{min(start.values()):.3f})")
    program, log, judged = replace(circuit, flat, subject.tokens, subject.outputs,
                                   subject.prediction, judge, floor, bos=subject.bos,
                                   progress=say, views=views)
    program = passes.simplify(program)
    program, judged = _read_out(program, judge, floor, log, judged, say)
    judged += _sensitivities(program, judge, floor, log)
    return passes.inline_tables(passes.descriptive_names(
        passes.inline_selectors(program))), log, judged


def _unreadable(program: ir.Program) -> int:
    """What a reader cannot see on the page: opaque MLPs and side-file tables."""
    size = program_size(passes.inline_tables(program))
    return size["opaque_mlps"] + size["side_tables"]


READ_OUT_FIT = 200           # sequences per bucket the linear read-out is fitted to


def _sensitivities(program, judge, floor, log) -> int:
    """For each `mlp` the written program keeps, how closely the model's decisions follow its
    output: the program judged on the choice set with noise in the MLP's output of a root
    mean square of each share in NOISE_SHARES of the output's spread (replace.py's
    `with_output_noise`), beside the floors, added to that MLP's entry in the log. A reading
    is a table of a few classes: where noise of a tenth of the spread already costs the
    floors, one whose classes leave a quarter of the variance unexplained (an error of half
    the spread) cannot keep the match either. Measured only for MLPs that stay to the end
    (an MLP the later steps remove needs no reason). (programs judged)."""
    sequences = [r[0] for rows in judge.sets.values() for r in rows]
    judged = 0
    for b in program.bindings:
        if not isinstance(b.value, ir.Mlp):
            continue
        out = np.concatenate(evaluate(program, sequences, ir.Ref(b.name)))
        noisy = with_output_noise(program, b.name, sequences, float(out.var(0).sum()),
                                  NOISE_SHARES, [NOISE_SEED, len(out)])
        tried = []
        for share, candidate in zip(NOISE_SHARES, noisy):
            judged += 1
            tried.append({"share": share, "match": {k: round(v, 4) for k, v in
                                                    judge(candidate).items()}})
        entry = next((e for e in log if e.get("what") == f"mlp {b.name[1:]}"
                      and e.get("primitive") is None), None)
        if entry is None:
            entry = {"what": b.name, "primitive": None}
            log.append(entry)
        entry.update(floor={k: round(v, 4) for k, v in floor.items()}, output_noise=tried)
    return judged


def _read_out(program, judge, floor, log, judged, say):
    """Where an opaque MLP or a side-file table is left, try the logits as one table over a
    few counts and readings (extractor/decompile/readout.py); kept when the judge accepts it
    and less is left unreadable. (program, programs judged)."""
    if _unreadable(program) == 0:
        return program, judged
    count = [0]

    def accepts(candidate):
        count[0] += 1
        result = judge.passes(candidate, floor)
        return result is not None, (min(result.values()) if result is not None else None)

    sequences = [r[0] for rows in judge.sets.values() for r in rows]
    def fit():
        # the linear read-out (tried where an mlp is left) fits a hundred weights or so: to
        # sequences of their own, not the choice set that then judges them (built only if
        # the read-out gets that far: the model runs on them)
        rows = [r for rows in judge.fresh(READ_OUT_FIT).values() for r in rows]
        return [r[0] for r in rows], [r[3] for r in rows], [r[1] for r in rows]
    found, entry = read_out(program, sequences, SPECIALS.values, accepts,
                            fit=fit if hasattr(judge, "fresh") else None)
    if found is not None and _unreadable(found) < _unreadable(program):
        say(f"logits: {entry['primitive']} (match {entry['match']:.3f})")
        program = found
    elif found is not None:
        entry = {**entry, "kept": False, "why": "no easier to read"}
    log.append(entry)
    return program, judged + count[0]


def _pruned_circuit(linear, tensors: dict):
    """The circuit of a cached run: its learned state and its flat edge mask."""
    circuit = Circuit(linear)
    state = {k[len("state."):]: v for k, v in tensors.items() if k.startswith("state.")}
    circuit.load_state_dict(state, strict=False)
    return circuit, tensors["flat"]


def best_found(tried: list[dict]) -> dict:
    """The candidate to write when none reaches the threshold: the best worst bucket, then
    (when every candidate fails some bucket completely, as on non-generalising models) the best
    mean over the buckets, then the fewest lines."""
    def rank(entry):
        matches = [r["match"] for r in entry["buckets"].values()]
        return min(matches), sum(matches) / len(matches), -entry["lines"]
    return max(tried, key=rank)


def _pruned_report(subject, settings, lln, runs, tried, chosen, program, reached,
                   seconds) -> PrunedReport:
    task = subject.task
    if reached:
        verdict = (f"a {chosen['lines']}-statement program matches the model on at least "
                   f"{settings.threshold} of the held-out sequences of every bucket")
    else:
        verdict = (f"no program below the size limit ({settings.max_lines} statements) reaches "
                   f"match {settings.threshold} in every bucket; the best found is written")
    return PrunedReport(
        stage="pruned", kind=subject.kind, task=task.name, mode=task.mode,
        model=_shape(subject.model), seed=settings.seed, threshold=settings.threshold,
        settings=attrs.asdict(settings), seconds=seconds, lln_a=lln,
        frontier=frontier(runs), runs=sorted(runs, key=lambda s: s["lam"]), candidates=tried,
        program=program_summary(program, lines=chosen["lines"], lam=chosen["lam"]),
        evaluation=Evaluation(chosen["buckets"], sequences_per_bucket=settings.n,
                              seed=settings.seed, offset=0),
        reached_threshold=reached, verdict=verdict)


# ------------------------------------------------------------------ the full program

def extract_full(subject: Subject, n: int = 2000, seed: int = 0, limit: int = MAX_ENTRIES,
                 fit_steps: int = 100, progress=None) -> Extraction:
    """The full program of `subject` and a report: LLN-A scales and faithfulness, program
    size, times. `progress(text)` hears about each step."""
    say = progress or _silent
    model, task = subject.model, subject.task
    seconds, lln, linear = {}, None, model
    if linearise.layer_norms(model):
        if task is None:
            raise RaspError([Diagnostic("X502", "a model with LayerNorm needs task data to "
                                        "estimate the LLN-A scales", hint="pass --task")])
        start = time.perf_counter()
        say("estimating LayerNorm scales")
        scales, lln = choose_scales(model, task, n, seed, fit_steps, progress)
        linear = linearise.linearised(model, scales)
        seconds["scales"] = round(time.perf_counter() - start, 3)
        start = time.perf_counter()
        say("measuring LLN-A faithfulness")
        lln["faithfulness"] = linearise.faithfulness(model, linear, task, n=n, seed=seed)
        lln.update(sequences_per_bucket=n, seed=seed)
        _diagnose(lln, model, scales, task, ExtractSettings().threshold, seed, say)
        seconds["faithfulness"] = round(time.perf_counter() - start, 3)
    start = time.perf_counter()
    program = full_program(linear, subject.tokens, subject.outputs, subject.prediction,
                           limit=limit, progress=progress, bos=subject.bos)
    seconds["build"] = round(time.perf_counter() - start, 3)
    c = model.config
    bound = size(model, len(subject.tokens), c.n_positions, len(subject.outputs))
    # counted from the shapes alone, before exactly-zero parts are dropped
    summary = program_summary(program, shape_bound={
        "paths": bound.paths, "score_terms": bound.score_terms, "table_entries": bound.entries})
    report = FullReport(stage="full", kind=subject.kind,
                        task=task.name if task else None, mode=task.mode if task else None,
                        model=_shape(model, full=True), seconds=seconds, lln_a=lln,
                        program=summary)
    return Extraction(program, report)


def choose_scales(model, task, n: int, seed: int, fit_steps: int = 100,
                  progress=None) -> tuple[dict, dict]:
    """LLN-A scales: the averaged variance, or those refined by `fit_steps` steps of gradient
    descent on the KL from the original, whichever keeps the original's predictions on more
    sequences of a selection set (its own seed: the evaluation sets are not used to choose).
    fit_steps=0 keeps the averaged variance."""
    estimated = linearise.estimate_scales(model, task, seed=seed)
    if fit_steps <= 0:
        return estimated, {"method": "estimated", "scales": estimated,
                           "estimated_scales": estimated}
    fitted = linearise.fit_scales(model, task, estimated, steps=fit_steps, seed=seed,
                                  progress=progress)
    if progress:
        progress("choosing LayerNorm scales")
    scored = {}
    for method, scales in (("estimated", estimated), ("fitted", fitted)):
        f = linearise.faithfulness(model, linearise.linearised(model, scales), task,
                                   n=max(100, n // 4), seed=seed + 1_000_003)
        scored[method] = sum(b["match"] for b in f.values()) / len(f)
    method = "fitted" if scored["fitted"] >= scored["estimated"] else "estimated"
    scales = fitted if method == "fitted" else estimated
    return scales, {"method": method, "scales": scales, "estimated_scales": estimated,
                    "fitted_scales": fitted, "selection_mean_match": scored}


# ------------------------------------------------------------------ sizes and writing

def program_size(program: ir.Program) -> dict:
    """Paths (activation variables), score terms, table entries and bindings of a program;
    what a reader cannot see on the page: the side-file tables it references and the opaque
    `mlp(...)` nodes left."""
    paths, terms, entries, mlps, side = 2, 0, 0, 0, set()   # token and pos, then one per
    for b in program.bindings:                               # aggregate and MLP
        if isinstance(b.value, (ir.Aggregate, ir.Mlp)):
            paths += 1
        for node in ir.walk(b.value):
            if isinstance(node, ir.Select):
                terms += 1
            elif isinstance(node, ir.Mlp):
                mlps += 1
            elif isinstance(node, ir.Matrix):
                entries += len(node.rows) * (len(node.cols) if node.cols is not None else 1)
                if node.name is not None:
                    side.add(node.name)
    return {"paths": paths, "score_terms": terms, "table_entries": entries,
            "bindings": len(program.bindings), "side_tables": len(side), "opaque_mlps": mlps}


def program_summary(program: ir.Program, **extra) -> ProgramSummary:
    return ProgramSummary(**program_size(program), **extra)


def program_lines(program: ir.Program) -> int:
    """Printed statements: what a reader has to read (no directives or comments; a statement
    printed over several lines, as an inline table is, counts once)."""
    return len(program.loads) + sum(1 for b in program.bindings if b.origin is None)


def write_extraction(extraction: Extraction, output: Path, checkpoint: str | Path,
                     subject: Subject, verify_n: int | None = None, seed: int = 0,
                     progress=None) -> Report:
    """Write the program (and its side-file), run the `--verify` round trip when `verify_n`
    is given, then write PROG.report.json; the report as written. The replaced MLPs' views go
    to PROG.mlps.safetensors (an older one is removed when there are none)."""
    written = [str(p) for p in write_program(extraction.program, output)]
    views = output.with_suffix(".mlps.safetensors")
    if write_mlp_views(extraction.mlp_views or {}, views):
        written.append(str(views))
    roundtrip = None
    if verify_n is not None:
        (progress or _silent)("round trip: compiling the program and comparing")
        roundtrip = round_trip(output, subject, n=verify_n, seed=seed)
    report_file = output.with_suffix(".report.json")
    # the checkpoint's absolute path: a rerun from another directory still knows it (outputs.py)
    report = extraction.report.written(str(output), str(Path(checkpoint).resolve()), roundtrip,
                                       files=written + [str(report_file)])
    from rasp_ir.jsondata import json_safe
    # the same standard JSON as `rasp extract --json` (NaN null, infinity "inf")
    atomic_write_text(report_file, json.dumps(json_safe(report.to_json()), indent=2,
                                              allow_nan=False) + "\n")
    return report


def write_mlp_views(views: dict, path: Path) -> bool:
    """Each view as three labelled tables, `mlpL.model`, `mlpL.primitive` (inputs reached ×
    residual directions) and `mlpL.count`, read by `rasp report`; whether there were any."""
    if not views:
        path.unlink(missing_ok=True)
        return False
    tables = {}
    for what, view in views.items():
        key = what.replace(" ", "")
        labels = tuple(view["labels"])
        dims = tuple(range(view["model"].shape[1]))
        for part in ("model", "primitive"):
            rows = tuple(map(tuple, view[part].tolist()))
            tables[f"{key}.{part}"] = ir.Matrix(labels, dims, rows, name=f"{key}.{part}")
        tables[f"{key}.count"] = ir.Matrix(labels, None, tuple(view["count"].tolist()),
                                           name=f"{key}.count")
    write_tables(path, tables)
    return True


def _shape(model, full: bool = False) -> ModelShape:
    c = model.config
    if full:
        return ModelShape(c.n_layers, c.n_heads, c.d_model, c.n_positions, c.vocab_size)
    return ModelShape(c.n_layers, c.n_heads, c.d_model)


class _Stopwatch:
    """Seconds per step, rounded as the report keeps them."""

    def __init__(self):
        self.started = self.last = time.perf_counter()
        self.seconds: dict[str, float] = {}

    def lap(self, name: str, since_start: bool = False) -> None:
        now = time.perf_counter()
        self.seconds[name] = round(now - (self.started if since_start else self.last), 2)
        self.last = now


def _silent(text, done=None, total=None) -> None:
    pass


def _plain(value):
    """JSON-ready: tuples as lists (the run spec is part of the cache key)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
