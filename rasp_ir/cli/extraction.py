"""`rasp extract`: a checkpoint rewritten as a short program, and its report printed."""

from __future__ import annotations

import os
from pathlib import Path

from rasp_ir.cli.common import EXIT_OK, add_command, emit_json, progress_for


def add_commands(sub) -> None:
    ex = add_command(sub, "extract", cmd_extract, quiet=True,
                     help="rewrite a checkpoint as a short RASP program",
                     json_help="one JSON envelope; result: the report as written to "
                     "PROG.report.json (docs/report.md)",
                     description="Rewrite CHECKPOINT as a D-RASP program. Default stage "
                        "`pruned`: LayerNorm is linearised (LLN-A), pruning runs at several "
                        "sparsity weights find the smallest circuit whose predictions match the "
                        "model's on THRESHOLD of the sequences of every length bucket, its tables "
                        "are replaced by named primitives where that keeps the match, and the "
                        "program is simplified; match and task accuracy are then measured on "
                        "held-out sequences. Stage `full`: the exact, unpruned program of every "
                        "path (also for models written by `rasp compile`). Writes PROG, its "
                        "tables beside it (PROG.tables.safetensors) and a report "
                        "(PROG.report.json); pruning runs are cached in PROG.runs/ and an "
                        "interrupted extraction resumes from them. Several checkpoints (with "
                        "-o DIR/) share one sweep: their pruning runs go to the executor "
                        "together, and each program is written to DIR/NAME.rasp.")
    ex.add_argument("checkpoint", type=Path, nargs="+", metavar="CHECKPOINT")
    ex.add_argument("--task", metavar="TASK",
                    help="the task of a trained checkpoint (default: its task.json or folder name)")
    ex.add_argument("--stage", choices=["pruned", "full"], default="pruned",
                    help="pruned: the short program (default); full: the exact program")
    ex.add_argument("-o", "--output", required=True, metavar="PROG.rasp|DIR/",
                    help="the program's file, or a directory (a trailing / or an existing one) "
                    "to write NAME.rasp into per checkpoint (needed for several)")
    ex.add_argument("--threshold", type=float, default=None, metavar="T",
                    help="match accuracy wanted in every length bucket (default 0.9; 1.0 for "
                    "a compiled model, whose extraction is judged on every generated input)")
    ex.add_argument("--workers", type=int, default=None, metavar="N",
                    help="pruning runs at once (default: 2, or 1 on a one-core machine)")
    ex.add_argument("--executor", default="local", metavar="local|ray[:ADDR]|dask[:ADDR]",
                    help="where pruning runs compute: local processes (default, --workers of "
                    "them), a Ray cluster (ray:auto, ray:HOST:PORT; the ray extra) or a Dask "
                    "scheduler (dask:tcp://HOST:8786; the dask extra); as many runs at once as "
                    "it has workers. Jobs carry the checkpoint's bytes; results are cached "
                    "here, in PROG.runs/")
    ex.add_argument("--device", default="cpu", metavar="cpu|cuda[:N]",
                    help="where pruning runs and the model's predictions compute (default "
                    "cpu; cuda needs a GPU torch can see)")
    ex.add_argument("--quick", action="store_true",
                    help="fewer and shorter pruning runs (a first look in about a minute on "
                    "small models)")
    ex.add_argument("--max-runs", type=int, default=8, metavar="N",
                    help="pruning runs in the sparsity sweep (default 8)")
    ex.add_argument("--early-stop", type=int, default=50, metavar="STEPS",
                    help="end a pruning stage once its edge masks have not changed for STEPS "
                    "steps, after at least 100 (default 50; 0: every stage runs all its "
                    "steps)")
    ex.add_argument("--answer-positions", type=int, default=0, metavar="N",
                    help="score only N answer positions per pruning step, drawn afresh each "
                    "step (default 0: every one). About 2x faster pruning on long answers "
                    "(sort), and noisier: it can change the chosen circuit")
    ex.add_argument("--n", type=int, default=None, metavar="N",
                    help="held-out sequences per bucket (default 1000; full stage: 2000 for "
                    "the LLN-A faithfulness)")
    ex.add_argument("--seed", type=int, default=0, help="seed of the task data (default 0)")
    ex.add_argument("--fit-steps", type=int, default=100, metavar="N",
                    help="full stage: gradient steps refining the LLN-A scales; 0 keeps the "
                    "averaged variance (default 100)")
    ex.add_argument("--max-entries", type=int, default=None, metavar="N",
                    help="full stage: refuse programs whose tables hold more numbers "
                    "(default 20,000,000)")
    ex.add_argument("--verify", action="store_true",
                    help="round trip: compile the written program (to PROG.compiled/) and "
                    "compare it with the interpreter (exact) and with the checkpoint (match "
                    "per bucket on held-out sequences); reported under \"roundtrip\"")
    ex.add_argument("--force", action="store_true",
                    help="write PROG even when it (or a file beside it) is not an earlier "
                    "extraction of this checkpoint: a program written by hand or edited since, "
                    "another checkpoint's extraction; its files this run does not write are "
                    "removed")
    ex.add_argument("--html", action="store_true",
                    help="also write the report as one HTML page, PROG.html (`rasp report`; "
                    "needs the viz extra)")


def cmd_extract(args) -> int:
    import torch

    from rasp_ir.diagnostics import Diagnostic, RaspError     # not on `rasp --help`'s path

    from extractor.decompile.cluster import parse
    from extractor.decompile.sweep import check_device
    from extractor.tasks.checkpoint import load_subject
    if (args.n is not None and args.n < 1) or args.seed < 0 or args.fit_steps < 0 or (
            args.max_entries is not None and args.max_entries < 1) or args.early_stop < 0 \
            or args.answer_positions < 0:
        raise RaspError([Diagnostic("T404", "--n and --max-entries must be at least 1, "
                                    "--seed, --fit-steps, --early-stop and --answer-positions "
                                    "at least 0")])
    if not 0 < (args.threshold or 1) <= 1 or args.max_runs < 1 or (
            args.workers is not None and args.workers < 1):
        raise RaspError([Diagnostic("T404", "--threshold must be in (0, 1], --max-runs and "
                                    "--workers at least 1")])
    parse(args.executor)             # X506 before anything is loaded
    check_device(args.device)        # X505: --device cuda without a GPU
    outputs = _outputs(args.output, args.checkpoint)
    from rasp_ir.outputs import claim_program
    # a rerun on the same checkpoint is allowed (and resumes from PROG.runs/); anything else
    # there is refused before the long work starts
    claims = [claim_program(output, checkpoint, args.force)
              for output, checkpoint in zip(outputs, args.checkpoint)]
    if args.html:
        from rasp_ir.viz import matplotlib_figure
        matplotlib_figure()          # D701 now, not after a long extraction
    torch.set_num_threads(min(2, torch.get_num_threads()))
    subjects = [load_subject(c, args.task) for c in args.checkpoint]
    reports = _run_stages(args, subjects, outputs)
    written = []
    if args.html:
        from rasp_ir.cli.drawing import write_report
        for output in outputs:
            html = output.with_suffix(".html")
            written.append(f"wrote {html} ({write_report(output, html) / 1e6:.2f} MB)")
    for claim in claims:
        claim.tidy()       # e.g. an earlier PROG.tables.safetensors this program does not use
    if args.json:
        if len(reports) == 1:
            emit_json("extract", reports[0].to_json())
        else:
            emit_json("extract", {"extractions": [r.to_json() for r in reports]})
        return EXIT_OK
    for checkpoint, output, report in zip(args.checkpoint, outputs, reports):
        _print_report(checkpoint, output, report)
    for line in written:
        print(line)
    return EXIT_OK


def _outputs(output: str, checkpoints: list[Path]) -> list[Path]:
    """The program file of each checkpoint: -o PROG.rasp for one, DIR/NAME.rasp (NAME: the
    checkpoint's folder) when -o is a directory: an existing one or one ending in /, made
    when its parent exists."""
    from rasp_ir.diagnostics import Diagnostic, RaspError
    path = Path(output)
    if not (output.endswith(("/", os.sep)) or path.is_dir()):
        if len(checkpoints) > 1:
            raise RaspError([Diagnostic("X503", f"{output}: several checkpoints are written "
                                        "into a directory", hint=f"-o {output}/ writes "
                                        "NAME.rasp there for each checkpoint")])
        if path.suffix != ".rasp":
            raise RaspError([Diagnostic("X503", f"{output}: the program's file name must end "
                                        "in .rasp (its tables go beside it)")])
        if not path.parent.is_dir():
            raise RaspError([Diagnostic("X503", f"{path.parent}: no such directory")])
        return [path]
    names = [c.resolve().name for c in checkpoints]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise RaspError([Diagnostic("X503", f"two checkpoints are named {', '.join(twice)}: "
                                    f"their programs would both be {path}/NAME.rasp",
                                    hint="extract them into different directories")])
    if not path.is_dir():
        if not path.parent.is_dir():
            raise RaspError([Diagnostic("X503", f"{path.parent}: no such directory")])
        path.mkdir()
    return [path / f"{name}.rasp" for name in names]


def _run_stages(args, subjects, outputs) -> list:
    """Extract as the options say, write each program, its tables and its report (after the
    `--verify` round trip); the reports as written, in the checkpoints' order. The trained
    checkpoints' pruning runs share one sweep."""
    from extractor.decompile.cluster import open_executor
    from extractor.decompile.compiled import extract_compiled
    from extractor.decompile.extract import (ExtractSettings, Target, extract_full,
                                             extract_programs, write_extraction)
    from extractor.decompile.paths import MAX_ENTRIES
    bar = progress_for(args, "extract")
    results: dict[int, tuple] = {}
    try:
        swept = []
        for i, subject in enumerate(subjects):
            say = bar if len(subjects) == 1 else _named(bar, args.checkpoint[i])
            if args.stage == "full":
                results[i] = (extract_full(subject, n=args.n or 2000, seed=args.seed,
                                           limit=args.max_entries or MAX_ENTRIES,
                                           fit_steps=args.fit_steps, progress=say),
                              args.n or 500)
            elif subject.kind == "compiled":
                results[i] = (extract_compiled(
                    subject, 1.0 if args.threshold is None else args.threshold, args.seed,
                    progress=say), args.n or 200)
            else:
                swept.append(i)
        if swept:
            settings = ExtractSettings(
                threshold=0.9 if args.threshold is None else args.threshold,
                workers=args.workers or min(2, os.cpu_count() or 1), seed=args.seed,
                n=args.n or (200 if args.quick else 1000), quick=args.quick,
                max_runs=args.max_runs, device=args.device, early_stop=args.early_stop,
                answer_positions=args.answer_positions)
            targets = [Target(subjects[i], args.checkpoint[i], args.task,
                              _runs_dir(outputs[i])) for i in swept]
            executor = open_executor(args.executor, settings.workers, args.device)
            try:
                extracted = extract_programs(targets, settings, executor, progress=bar)
            finally:
                executor.shutdown(cancel_futures=True)
            for i, result in zip(swept, extracted):
                results[i] = (result, settings.n)
        return [write_extraction(results[i][0], outputs[i], args.checkpoint[i], subjects[i],
                                 results[i][1] if args.verify else None, args.seed,
                                 progress=bar)
                for i in range(len(subjects))]
    finally:
        bar.close()


def _named(bar, checkpoint: Path):
    def named(text, done=None, total=None):
        bar(f"{checkpoint.name}: {text}", done=done, total=total)
    return named


def _runs_dir(output: Path) -> Path:
    return output.with_suffix(".runs")


def _print_report(checkpoint: Path, output: Path, report) -> None:
    from extractor.decompile.report import CompiledReport, FullReport
    m = report.model
    if isinstance(report, FullReport):
        _print_full(checkpoint, output, report)
    elif isinstance(report, CompiledReport):
        inputs = report.inputs
        print(f"{checkpoint}: compiled model, {m.layers} layers x {m.heads} heads")
        print(f"  {inputs['count']:,} generated inputs of lengths 1-{inputs['max_len']} (all of "
              f"them up to length {inputs['exhaustive_up_to']})")
        stages = report.pruning.get("stages")
        print("  greedy pruning: " + ", ".join(f"{st['stage']} {st['edges']} edges"
                                               for st in stages)
              if stages else f"  pruning: {report.pruning['method']}")
        print(f"  {report.verdict}")
        print(f"wrote {output} ({_beside(output, report)}) in "
              f"{report.seconds['total']:.0f} s")
    else:
        print(f"{checkpoint}: {m.layers} layers x {m.heads} heads, task {report.task}")
        _print_diagnosis(report.lln_a)
        print(f"  {len(report.runs)} pruning runs in {report.seconds['pruning']:.0f} s; "
              f"frontier (edges: worst-bucket match on the choice set): " + ", ".join(
                  f"{p['edges']}: {p['match']:.2f}" for p in report.frontier["products"]))
        stated = (report.lln_a or {}).get("stated") or {}
        if stated.get("kept"):
            print(f"  LLN-A fails (no run's first stage reaches {report.threshold}) and no "
                  "pruned program does: the final LayerNorm stated in the program instead "
                  "(its scale goes as (n + 1)^"
                  f"{stated['measured']['slope']:.2f}: normalize(share, 1 / (indices + 1)))")
        ev = report.evaluation
        size = report.program
        print(f"  {size.lines}-statement program ({size.side_tables} side-file table(s), "
              f"{size.opaque_mlps} opaque mlp node(s)); held-out ({ev.sequences_per_bucket} "
              "sequences per bucket, offset 0):")
        choice = next((c.get("choice") for c in report.candidates
                       if c["lam"] == report.program.lam), None) or {}
        for bucket, r in ev.buckets.items():
            chosen = (f"   (choice set: match {choice[bucket]['match']:.4f} on "
                      f"{choice[bucket]['sequences']})" if bucket in choice else "")
            print(f"    {bucket:<10} match {r['match']:.4f}   task {r['task']:.4f}{chosen}")
        print(f"  {report.verdict}")
        print(f"wrote {output} ({_beside(output, report)}, runs: {_runs_dir(output).name}/) "
              f"in {report.seconds['total']:.0f} s")
    if report.roundtrip is not None:
        print("\n".join(round_trip_lines(report.roundtrip)))


def _print_full(checkpoint: Path, output: Path, report) -> None:
    m, size, lln = report.model, report.program, report.lln_a
    print(f"{checkpoint}: {report.kind} model, {m.layers} layers x {m.heads} heads"
          + (f", task {report.task}" if report.task else ""))
    if lln is None:
        print("  no LayerNorm: the program is an exact rewrite of the model")
    else:
        print(f"  LLN-A with {lln['method']} LayerNorm scales; faithfulness "
              f"({lln['sequences_per_bucket']} sequences per bucket, match = same prediction "
              "at every scored position):")
        for bucket, f in lln["faithfulness"].items():
            print(f"    {bucket:<10} match {f['match']:.4f}   KL {f['kl']:.2e}")
        _print_diagnosis(lln)
    print(f"  program: {size.paths} paths, {size.score_terms} score terms, "
          f"{size.table_entries:,} table entries; built in {report.seconds['build']:.2f} s")
    print(f"wrote {output} ({_beside(output, report)})")


def _print_diagnosis(lln: dict | None) -> None:
    """Where LLN-A lost the model: each LayerNorm's effect (extractor/decompile/layernorm.py)."""
    if lln and "diagnosis" in lln:
        from extractor.decompile.layernorm import describe
        print("\n".join(describe(lln["diagnosis"])))
    elif lln and "not_diagnosed" in lln:
        from extractor.decompile.layernorm import worst
        print(f"  LLN-A with fixed scales matches the model on {worst(lln['faithfulness']):.3f} "
              "of the worst bucket, "
              f"but {lln['not_diagnosed']}: no LayerNorm diagnosis")


def _beside(output, report) -> str:
    """The files this extraction wrote beside the program, as the report lists them (a
    side-file left by an earlier extraction is not one of them)."""
    written = {Path(f).name for f in report.files or ()}
    tables = output.with_suffix(".tables.safetensors").name
    report_file = output.with_suffix(".report.json").name
    parts = [f"tables: {tables}"] if tables in written else []
    return ", ".join(parts + [f"report: {report_file}"])


def round_trip_lines(report: dict) -> list[str]:
    """The round trip as printed by `rasp extract --verify`."""
    if not report["compiled"]:
        problems = report["problems"]
        out = [f"  round trip: not compiled: {len(problems)} construct(s) cannot be compiled "
               "exactly:"]
        for p in problems:
            where = f"{Path(p['file']).name}:{p['line']}:{p['column']}: " if "file" in p else ""
            construct = p.get("construct", "")
            if len(construct) > 72:
                construct = construct[:69] + "..."
            out.append(f"    {where}{p['code']} {p['message']}")
            if construct:
                out.append(f"      {construct}")
        return out
    m, a = report["model"], report["interpreter"]
    out = [f"  round trip: compiled to {m['layers']} layers x {m['heads']} heads, residual "
           f"{m['residual_width']}, MLP {m['mlp_width']}, {m['activation']} "
           f"({report['directory']})"]
    verdict = "exact" if a["exact"] else f"{a['differences']} positions DIFFER" + (
        f" ({a['ties']} at ties of the program)" if a["ties"] else "")
    out.append(f"    compiled vs interpreter: {verdict} on {a['inputs']} inputs "
               f"({a['task_sequences']} task, {a['generated']} generated; {a['positions']} "
               f"positions, {a['decision']}); max |logit diff| {a['max_abs_logit_diff']:.2e}")
    if a["first_difference"] is not None:
        f = a["first_difference"]
        out.append(f"      first difference ({f['source']}): position {f['position']} of "
                   f"{' '.join(map(str, f['input'][:40]))}"
                   + (" ..." if len(f["input"]) > 40 else ""))
    c = report["checkpoint"]
    if c is None:
        return out
    if "sequences_per_bucket" not in c:      # a compiled checkpoint: generated inputs
        out.append("    compiled vs checkpoint (generated inputs; no task data):")
        for name, b in c["buckets"].items():
            out.append(f"      lengths {name:<10} match {b['match']:.4f}   "
                       f"({b['sequences']} inputs)")
        return out
    out.append(f"    compiled vs checkpoint ({c['sequences_per_bucket']} held-out sequences "
               "per bucket):")
    for name, b in c["buckets"].items():
        out.append(f"      {name:<10} match {b['match']:.4f}   task {b['task']:.4f}   "
                   f"(program: match {b['program_match']:.4f})")
    return out
