"""`rasp extract`: a checkpoint to a program, with what it measured along the way.

Stage "full" (extractor part 1): LLN-A scales estimated on task data, the linearised model's
faithfulness to the original per length bucket, then the exact path program of the linearised
model (extractor/decompile/paths.py). Compiled models have no LayerNorm: their program is exact as is.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from attrs import frozen

from extractor.decompile.paths import MAX_ENTRIES, full_program, size
from extractor.tasks.checkpoint import Subject
from rasp_ir import nodes as ir
from rasp_ir.diagnostics import Diagnostic, RaspError


@frozen
class Extraction:
    program: ir.Program
    report: dict


def extract_full(subject: Subject, n: int = 2000, seed: int = 0, limit: int = MAX_ENTRIES,
                 fit_steps: int = 100, progress=None) -> Extraction:
    """The full program of `subject` and a report: LLN-A scales and faithfulness, program
    size, times. `progress(text)` hears about each step."""
    from extractor.decompile.linearise import faithfulness, layer_norms, linearised
    model, report = subject.model, {"stage": "full", "kind": subject.kind}
    c = model.config
    report["model"] = {"layers": c.n_layers, "heads": c.n_heads, "d_model": c.d_model,
                       "n_positions": c.n_positions, "vocab": c.vocab_size}
    if subject.task is not None:
        report["task"] = subject.task.name
        report["mode"] = subject.task.mode
    timings = report["seconds"] = {}
    if layer_norms(model):
        if subject.task is None:
            raise RaspError([Diagnostic("X502", "a model with LayerNorm needs task data to "
                                        "estimate the LLN-A scales", hint="pass --task")])
        start = time.perf_counter()
        if progress:
            progress("estimating LayerNorm scales")
        scales, lln = choose_scales(model, subject.task, n, seed, fit_steps, progress)
        linear = linearised(model, scales)
        timings["scales"] = round(time.perf_counter() - start, 3)
        start = time.perf_counter()
        if progress:
            progress("measuring LLN-A faithfulness")
        lln["faithfulness"] = faithfulness(model, linear, subject.task, n=n, seed=seed)
        lln.update(sequences_per_bucket=n, seed=seed)
        report["lln_a"] = lln
        timings["faithfulness"] = round(time.perf_counter() - start, 3)
    else:
        linear = model
        report["lln_a"] = None      # no LayerNorm: the rewrite is exact as it stands
    start = time.perf_counter()
    program = full_program(linear, subject.tokens, subject.outputs, subject.prediction,
                           limit=limit, progress=progress, bos=subject.bos)
    timings["build"] = round(time.perf_counter() - start, 3)
    report["program"] = program_size(program)
    bound = size(model, len(subject.tokens), c.n_positions, len(subject.outputs))
    # counted from the shapes alone, before exactly-zero parts are dropped
    report["program"]["shape_bound"] = {"paths": bound.paths, "score_terms": bound.score_terms,
                                        "table_entries": bound.entries}
    return Extraction(program, report)


def choose_scales(model, task, n: int, seed: int, fit_steps: int = 100,
                  progress=None) -> tuple[dict, dict]:
    """LLN-A scales: the averaged variance, or those refined by `fit_steps` steps of gradient
    descent on the KL from the original, whichever keeps the original's predictions on more
    sequences of a selection set (its own seed: the evaluation sets are not used to choose).
    fit_steps=0 keeps the averaged variance."""
    from extractor.decompile.linearise import (
        estimate_scales,
        faithfulness,
        fit_scales,
        linearised,
    )
    estimated = estimate_scales(model, task, seed=seed)
    if fit_steps <= 0:
        return estimated, {"method": "estimated", "scales": estimated,
                           "estimated_scales": estimated}
    fitted = fit_scales(model, task, estimated, steps=fit_steps, seed=seed, progress=progress)
    if progress:
        progress("choosing LayerNorm scales")
    scored = {}
    for method, scales in (("estimated", estimated), ("fitted", fitted)):
        f = faithfulness(model, linearised(model, scales), task, n=max(100, n // 4),
                         seed=seed + 1_000_003)
        scored[method] = sum(b["match"] for b in f.values()) / len(f)
    method = "fitted" if scored["fitted"] >= scored["estimated"] else "estimated"
    scales = fitted if method == "fitted" else estimated
    return scales, {"method": method, "scales": scales, "estimated_scales": estimated,
                    "fitted_scales": fitted, "selection_mean_match": scored}


def program_size(program: ir.Program) -> dict:
    """Paths (activation variables), score terms, table entries and bindings of a program."""
    paths, terms, entries = 2, 0, 0      # token and pos, then one per aggregate and MLP
    for b in program.bindings:
        if isinstance(b.value, (ir.Aggregate, ir.Mlp)):
            paths += 1
        for node in ir.walk(b.value):
            if isinstance(node, ir.Select):
                terms += 1
            if isinstance(node, ir.Matrix):
                entries += len(node.rows) * (len(node.cols) if node.cols is not None else 1)
    return {"paths": paths, "score_terms": terms, "table_entries": entries,
            "bindings": len(program.bindings)}


# ------------------------------------------------------------------ the pruned program

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
    quick: bool = False          # fewer, shorter runs (the README's example)

    def prune_settings(self):
        from extractor.decompile.prune import PruneSettings
        if self.quick:
            return PruneSettings(steps=(150, 100, 100), pool=12, selection=32)
        return PruneSettings()


def program_lines(program: ir.Program) -> int:
    """Printed statement lines: what a reader has to read (no directives, comments, blanks)."""
    from rasp_ir.printer import pretty
    return sum(1 for line in pretty(program).splitlines()
               if line.strip() and not line.lstrip().startswith(("@", "#")))


def extract_program(subject: Subject, checkpoint: str | Path, task_spec: str | None,
                    runs_dir: Path, settings: ExtractSettings = ExtractSettings(),
                    executor=None, progress=None) -> Extraction:
    """The short program of a trained checkpoint, and its report (see extractor/decompile/sweep.py,
    prune.py, replace.py, judge.py)."""
    from extractor.decompile.linearise import (
        estimate_scales,
        faithfulness,
        layer_norms,
        linearised,
    )
    from extractor.decompile.sweep import (
        GRID,
        ProcessExecutor,
        RunSpec,
        frontier,
        sweep,
        worst_match,
    )
    say = progress or (lambda text: None)
    if subject.task is None:
        raise RaspError([Diagnostic(
            "X504", "sweep pruning needs task data, and a compiled model has no task",
            hint="a compiled model is extracted by extractor.decompile.compiled.extract_compiled "
            "(what `rasp extract` runs for it)")])
    model, task = subject.model, subject.task
    c = model.config
    started = time.perf_counter()
    report = {"stage": "pruned", "kind": subject.kind, "task": task.name, "mode": task.mode,
              "model": {"layers": c.n_layers, "heads": c.n_heads, "d_model": c.d_model},
              "seed": settings.seed, "threshold": settings.threshold,
              "settings": _settings_dict(settings)}
    timings = report["seconds"] = {}
    scales, linear = {}, model
    if layer_norms(model):
        say("estimating LayerNorm scales")
        scales = estimate_scales(model, task, seed=settings.seed)
        linear = linearised(model, scales)
        f = faithfulness(model, linear, task, n=min(settings.n, 500), seed=settings.seed)
        report["lln_a"] = {"estimated_scales": scales, "faithfulness": f,
                           "note": "the scales are learned further, per reader, while pruning"}
    timings["lln_a"] = round(time.perf_counter() - started, 2)

    prune_settings = settings.prune_settings()
    base = RunSpec(str(Path(checkpoint).resolve()), task_spec, scales,
                   _plain(prune_settings.to_dict()), settings.seed, 0.0)
    executor = executor or ProcessExecutor(settings.workers)
    start = time.perf_counter()
    count = [0]

    def heard(summary):
        count[0] += 1
        st = summary["stages"]
        say(f"run {count[0]}: λ={summary['lam']:.2g} edges "
            + "→".join(str(s["edges"]) for s in st)
            + f", worst-bucket match {min(st[-1]['match'].values()):.3f}")

    grid = GRID[1:] if settings.quick else GRID
    summaries = sweep(base, runs_dir, settings.threshold, executor,
                      max_runs=3 if settings.quick else settings.max_runs, grid=grid,
                      report=heard)
    timings["pruning"] = round(time.perf_counter() - start, 2)
    report["frontier"] = frontier(summaries)
    report["runs"] = sorted(summaries, key=lambda s: s["lam"])

    passing = [s for s in summaries if worst_match(s) >= settings.threshold]
    order = sorted(passing, key=lambda s: (s["stages"][-1]["edges"], -worst_match(s)))
    if not order:
        order = sorted(summaries, key=lambda s: (-worst_match(s), s["stages"][-1]["edges"]))
    start = time.perf_counter()
    # the interpreter's numpy work runs between torch calls, and torch's idle worker threads
    # spin meanwhile (5-10x slower on two cores): one torch thread for this part
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        tried, chosen = _choose(order, subject, linear, base, runs_dir, settings, say)
    finally:
        torch.set_num_threads(threads)
    timings["primitives"] = round(time.perf_counter() - start, 2)
    reached = chosen is not None
    if chosen is None:
        chosen = best_found(tried)
    program = chosen.pop("_program")
    for entry in tried:
        entry.pop("_program", None)
    report["candidates"] = tried
    report["program"] = {"lines": chosen["lines"], "lam": chosen["lam"],
                         **{k: v for k, v in program_size(program).items()}}
    report["evaluation"] = {"sequences_per_bucket": settings.n, "seed": settings.seed,
                            "offset": 0, "buckets": chosen["buckets"]}
    report["reached_threshold"] = reached
    if reached:
        report["verdict"] = (f"a {chosen['lines']}-line program matches the model on at least "
                             f"{settings.threshold} of the held-out sequences of every bucket")
    else:
        report["verdict"] = (f"no program below the size limit ({settings.max_lines} lines) "
                             f"reaches match {settings.threshold} in every bucket; the best "
                             "found is written")
    timings["total"] = round(time.perf_counter() - started, 2)
    return Extraction(program, report)


def best_found(tried: list[dict]) -> dict:
    """The candidate to write when none reaches the threshold: the best worst bucket, then
    (when every candidate fails some bucket completely, as on non-generalising models) the best
    mean over the buckets, then the fewest lines."""
    def rank(entry):
        matches = [r["match"] for r in entry["buckets"].values()]
        return min(matches), sum(matches) / len(matches), -entry["lines"]
    return max(tried, key=rank)


def _choose(order, subject, linear, base, runs_dir, settings, say):
    """Take the sweep's runs, smallest first, through primitives and simplification until one
    matches the model on the held-out sets; (every candidate tried, the chosen one or None)."""
    from extractor.checking.judge import Judge
    model, task = subject.model, subject.task
    chooser = Judge.selection(model, task, settings.selection, settings.seed)
    held_out = Judge.held_out(model, task, settings.n, settings.seed)
    tried, chosen = [], None
    for summary in order[:settings.candidates]:
        program, log, judged = _readable(subject, linear, base, summary, runs_dir, chooser,
                                         settings, say)
        result = held_out(program, task_accuracy=True)
        lines = program_lines(program)
        worst = min(r["match"] for r in result.values())
        entry = {"lam": summary["lam"], "lines": lines, "buckets": result,
                 "replacements": log, "programs_judged": judged,
                 "_program": program}
        tried.append(entry)
        say(f"λ={summary['lam']:.2g}: {lines} lines, held-out worst-bucket match {worst:.3f}")
        if worst >= settings.threshold and lines <= settings.max_lines:
            chosen = entry
            break
    return tried, chosen


def _readable(subject, linear, base, summary, runs_dir, judge, settings, say):
    """A sweep run's circuit, with primitives, simplified and named."""
    from extractor.decompile.circuit import Circuit
    from extractor.decompile.replace import replace
    from extractor.decompile.sweep import RunCache
    from rasp_ir import passes
    spec = base.with_lam(summary["lam"])
    tensors = RunCache(runs_dir).tensors(spec)
    circuit = Circuit(linear)
    state = {k[len("state."):]: v for k, v in tensors.items() if k.startswith("state.")}
    circuit.load_state_dict(state, strict=False)
    flat = tensors["flat"]
    bos = subject.bos
    from extractor.decompile.circuit_program import circuit_program
    base_program = circuit_program(circuit, flat, subject.tokens, subject.outputs,
                                   subject.prediction, bos=bos)
    start = judge(base_program)
    # a bucket above the threshold stays above it (with a margin for the held-out sets); a
    # bucket below it (a model the circuit does not capture there) loses at most 0.02
    keep = settings.threshold + settings.margin
    floor = {b: keep if m >= keep else m - 0.02 for b, m in start.items()}
    say(f"λ={summary['lam']:.2g}: primitives (pruned program's worst-bucket match "
        f"{min(start.values()):.3f})")
    program, log, judged = replace(circuit, flat, subject.tokens, subject.outputs,
                                   subject.prediction, judge, floor, bos=bos, progress=say)
    program = passes.descriptive_names(passes.inline_selectors(passes.simplify(program)))
    return program, log, judged


def _plain(value):
    """JSON-ready: tuples as lists."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _settings_dict(settings) -> dict:
    from attrs import asdict
    return asdict(settings)
