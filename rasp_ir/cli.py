"""The `rasp` command line. Heavy modules are imported inside commands so `rasp --help` is instant."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path

from .diagnostics import Diagnostic, RaspError

EXIT_OK, EXIT_ERROR = 0, 1


def main(argv: list[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return EXIT_ERROR
    try:
        return args.handler(args)
    except RaspError as exc:
        _print_diagnostics(exc.diagnostics, exc.source)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return EXIT_OK
    except Exception as exc:           # a bug of ours: say so plainly (RASP_DEBUG=1 shows it)
        if os.environ.get("RASP_DEBUG"):
            raise
        print(f"rasp: internal error ({type(exc).__name__}: {exc}). This is a bug in rasp-ir; "
              "rerun with RASP_DEBUG=1 for the traceback and report it.", file=sys.stderr)
        return 2


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rasp", description="RASP programs and transformers: run, check and format "
        ".rasp files.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", help="evaluate a program's @output on inputs",
                         description="Evaluate the @output of FILE on each INPUT. A plain "
                         "INPUT is a sequence of characters; a JSON list such as '[3,1,2]' or "
                         "'[\"<bos>\",\"0\"]' is a sequence of tokens. Without INPUT, one input "
                         "per line is read from standard input. With @bos, the BOS token is "
                         "prepended to inputs that lack it.")
    run.add_argument("file", type=Path, nargs="?",
                     help="the program (leave out with --model)")
    run.add_argument("inputs", nargs="*", metavar="INPUT")
    run.add_argument("--model", type=Path, metavar="DIR",
                     help="run a model compiled by `rasp compile` instead of a program")
    run.add_argument("--json", action="store_true",
                     help='one JSON object per input: {"input": [...], "output": [...]} '
                     '(+ "logits" for logits or distribution outputs)')
    run.set_defaults(handler=cmd_run)

    check = sub.add_parser("check", help="type-check a program and run its @expect lines",
                           description="Report every diagnostic of FILE; exit 1 if there is "
                           "an error or a failing @expect.")
    check.add_argument("file", type=Path)
    check.add_argument("--no-expect", action="store_true", help="skip the @expect lines")
    check.set_defaults(handler=cmd_check)

    fmt = sub.add_parser("fmt", help="print a program in canonical form",
                         description="Print FILE in canonical form (the IR printed back: "
                         "functions and loops appear expanded, comments are not kept).")
    mode = fmt.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true",
                      help="exit 1 if the file is not in canonical form")
    mode.add_argument("--write", action="store_true",
                      help="rewrite the file in place (refused when that would drop comments, "
                      "functions or loops)")
    fmt.add_argument("--simplify", action="store_true",
                     help="simplify first: drop dead bindings and terms that add nothing, fold "
                     "constants (rasp_ir.passes.simplify); --write rewrites the side-file too")
    fmt.add_argument("file", type=Path)
    fmt.set_defaults(handler=cmd_fmt)

    comp = sub.add_parser("compile", help="compile a program to transformer weights",
                          description="Compile FILE's @output to an exact transformer, written "
                          "to DIR as model.safetensors + config.json (with the vocabulary and "
                          "the output encoding). Vocabulary and maximum length come from the "
                          "file's @vocab and @maxlen unless --max-len is given.")
    comp.add_argument("file", type=Path)
    comp.add_argument("-o", "--output", type=Path, required=True, metavar="DIR")
    comp.add_argument("--max-len", type=int, metavar="N", help="longest input (default @maxlen)")
    comp.add_argument("--stats", action="store_true",
                      help="print layers, heads, residual width, MLP width and parameters")
    comp.set_defaults(handler=cmd_compile)

    repl = sub.add_parser("repl", help="an interactive RASP session")
    repl.add_argument("file", type=Path, nargs="?", help="a file to load first")
    repl.set_defaults(handler=cmd_repl)
    _add_model_commands(sub)
    _add_verification_commands(sub)
    return parser


def _add_model_commands(sub) -> None:
    """`rasp eval`, `rasp train` and `rasp tasks`: trained models and the paper's tasks."""
    lengths_help = ("comma-separated length buckets LO-HI (default: the task's, for the "
                    "paper's tasks 0-50,51-100,101-150)")
    ev = sub.add_parser("eval", help="accuracy of a checkpoint per length bucket",
                        description="Evaluate CHECKPOINT (a Hugging Face GPT-2 or rasp-ir "
                        "directory) on fixed sets of its task, per length bucket, with the "
                        "D-RASP paper's metric: a sequence counts when every scored "
                        "prediction is right (for next-token-set tasks: every vocabulary "
                        "entry's sign at every position). The task comes from --task, the "
                        "checkpoint's task.json, or its folder name (bce_tomita4-@2l2h16d… is "
                        "tomita4 in next-token-set mode).")
    ev.add_argument("checkpoint", type=Path, metavar="CHECKPOINT")
    ev.add_argument("--task", metavar="TASK",
                    help="a task name, FILE.jsonl or FILE.py:CLASS (`rasp tasks` lists names)")
    ev.add_argument("--lengths", metavar="BUCKETS", help=lengths_help)
    ev.add_argument("--n", type=int, default=2000, metavar="N",
                    help="sequences per bucket (default 2000)")
    ev.add_argument("--seed", type=int, default=0, help="seed of the evaluation sets")
    ev.add_argument("--json", action="store_true",
                    help='print one JSON object {"0-50": accuracy, ...}')
    ev.add_argument("--quiet", action="store_true", help="no progress bar")
    ev.set_defaults(handler=cmd_eval)

    tr = sub.add_parser("train", help="train a small GPT-2 model on a task",
                        description="Train a GPT-2-style model on TASK on the CPU with the "
                        "D-RASP paper's recipe (AdamW, weight decay 0.01, clipping 1.0, linear "
                        "decay, batches of 64, random position offsets), stopping early once "
                        "the in-distribution bucket is entirely right. Writes DIR/config.json "
                        "+ model.safetensors (loadable by transformers.GPT2LMHeadModel), "
                        "DIR/task.json (task, vocabulary, training record, accuracy) and "
                        "DIR/acc.txt.")
    tr.add_argument("task", metavar="TASK",
                    help="a task name, FILE.jsonl or FILE.py:CLASS (`rasp tasks` lists names)")
    tr.add_argument("--layers", type=int, required=True)
    tr.add_argument("--heads", type=int, required=True)
    tr.add_argument("--d-model", type=int, required=True)
    tr.add_argument("--lr", type=float, default=1e-3, help="learning rate (default 1e-3)")
    tr.add_argument("--dropout", type=float, default=0.0,
                    help="GPT-2's dropout: embeddings, attention, residual (default 0)")
    tr.add_argument("--steps", type=int, default=30_000,
                    help="most optimiser steps; the learning rate decays to 0 over them "
                    "(default 30000)")
    tr.add_argument("--batch-size", type=int, default=64)
    tr.add_argument("--eval-every", type=int, default=3_000, metavar="STEPS",
                    help="steps between in-distribution evaluations (default 3000)")
    tr.add_argument("--n", type=int, default=2000, metavar="N",
                    help="sequences per evaluation bucket (default 2000)")
    tr.add_argument("--lengths", metavar="BUCKETS", help=lengths_help)
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    tr.add_argument("-o", "--output", type=Path, required=True, metavar="DIR")
    tr.add_argument("--json", action="store_true",
                    help="print the result as one JSON object")
    tr.add_argument("--quiet", action="store_true", help="no progress bar")
    tr.set_defaults(handler=cmd_train)

    ts = sub.add_parser("tasks", help="list the tasks `rasp train` and `rasp eval` know",
                        description="List the registered tasks: name, mode (lm: next token; "
                        "bce: next-token sets), vocabulary size and a description.")
    ts.set_defaults(handler=cmd_tasks)

    ex = sub.add_parser("extract", help="rewrite a checkpoint as a short RASP program",
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
                        "interrupted extraction resumes from them.")
    ex.add_argument("checkpoint", type=Path, metavar="CHECKPOINT")
    ex.add_argument("--task", metavar="TASK",
                    help="the task of a trained checkpoint (default: its task.json or folder name)")
    ex.add_argument("--stage", choices=["pruned", "full"], default="pruned",
                    help="pruned: the short program (default); full: the exact program")
    ex.add_argument("-o", "--output", type=Path, required=True, metavar="PROG.rasp")
    ex.add_argument("--threshold", type=float, default=None, metavar="T",
                    help="match accuracy wanted in every length bucket (default 0.9; 1.0 for "
                    "a compiled model, whose extraction is judged on every generated input)")
    ex.add_argument("--workers", type=int, default=None, metavar="N",
                    help="pruning runs at once (default: 2, or 1 on a one-core machine)")
    ex.add_argument("--quick", action="store_true",
                    help="fewer and shorter pruning runs (a first look in about a minute on "
                    "small models)")
    ex.add_argument("--max-runs", type=int, default=8, metavar="N",
                    help="pruning runs in the sparsity sweep (default 8)")
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
    ex.add_argument("--json", action="store_true", help="print the report as JSON")
    ex.add_argument("--quiet", action="store_true", help="no progress display")
    ex.add_argument("--verify", action="store_true",
                    help="round trip: compile the written program (to PROG.compiled/) and "
                    "compare it with the interpreter (exact) and with the checkpoint (match "
                    "per bucket on held-out sequences); reported under \"roundtrip\"")
    ex.set_defaults(handler=cmd_extract)


# ---------------------------------------------------------------- helpers

def _print_diagnostics(diagnostics: list[Diagnostic], source: str | None = None,
                       sources: dict | None = None) -> None:
    for d in diagnostics:
        text = source
        if d.span is not None and sources is not None:
            text = sources.get(d.span.file, source)
        if d.span is not None and text is None:
            try:
                text = Path(d.span.file).read_text(encoding="utf-8")
            except OSError:
                text = None
        print(d.render(text), file=sys.stderr)
        print(file=sys.stderr)


def _load(path: Path):
    import grammar
    return grammar.load(path)


def parse_input(text: str, vocab: tuple | None) -> list:
    """A command-line input: a JSON list of tokens; else, where the vocabulary has tokens longer
    than one character, tokens separated by spaces; else a string of characters. Tokens are
    matched to the vocabulary's spelling (3 -> "3" when the vocabulary holds strings)."""
    tokens = None
    if text.lstrip().startswith("["):
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise RaspError([Diagnostic("R233", f"input {text!r} is not a JSON list: {exc.msg} "
                                        f"at column {exc.colno}")]) from None
        if not isinstance(value, list) or any(isinstance(v, (list, dict)) for v in value):
            raise RaspError([Diagnostic("R233", f"input {text!r} must be a flat JSON list")])
        tokens = value
    if tokens is None:
        if vocab and any(isinstance(v, str) and len(v) > 1 for v in vocab):
            # a vocabulary of words (`<bos>`, `17`): tokens are separated by spaces
            tokens = text.split()
        else:
            return list(text)
    if vocab is None:
        return tokens
    known = set(vocab)
    by_text = {str(v): v for v in vocab}
    return [t if t in known else by_text.get(str(t), t) for t in tokens]


def _plain(values) -> str:
    if values and all(isinstance(v, str) and len(v) == 1 for v in values):
        return "".join(values)
    return json.dumps(_rounded(values), ensure_ascii=False)


def _rounded(value):
    if isinstance(value, float):
        return round(value, 3)
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


# ---------------------------------------------------------------- commands

def _inputs(args) -> list[str] | None:
    texts = args.inputs
    if not texts:
        if sys.stdin is None or sys.stdin.isatty():
            print("rasp run: give at least one INPUT (or pipe inputs, one per line)",
                  file=sys.stderr)
            return None
        texts = [line.rstrip("\n") for line in sys.stdin if line.strip()]
    return texts


def _print_result(record: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(record, ensure_ascii=False))
    else:
        print(_plain(record["output"]))


def cmd_run_model(args) -> int:
    from compiler.compile import load_compiled
    if args.file is not None:           # `rasp run --model DIR hello`: FILE slot holds INPUT
        args.inputs = [str(args.file)] + list(args.inputs)
    compiled = load_compiled(args.model)
    texts = _inputs(args)
    if texts is None:
        return EXIT_ERROR
    vocab = tuple(compiled.vocab[1:])
    inputs = [parse_input(t, vocab) for t in texts]
    logits = compiled.logits(inputs)
    for seq, scores, decoded in zip(inputs, logits, compiled.run(inputs)):
        record = {"input": list(seq), "output": decoded}
        if compiled.output_kind == "logits":
            record["logits"] = scores.tolist()
        _print_result(record, args.json)
    return EXIT_OK


def cmd_compile(args) -> int:
    from compiler.compile import compile_program, save_compiled
    program = _load(args.file)
    compiled = compile_program(program, args.max_len)
    save_compiled(compiled, args.output)
    if args.stats:
        s = compiled.stats
        print(f"layers {s['layers']}, heads {s['heads']}, residual width "
              f"{s['residual_width']}, MLP width {s['mlp_width']}, parameters "
              f"{s['parameters']:,}")
    print(f"wrote {args.output}")
    return EXIT_OK


def cmd_run(args) -> int:
    from .interpreter import run
    if args.model is not None:
        return cmd_run_model(args)
    if args.file is None:
        print("rasp run: give a program FILE or --model DIR", file=sys.stderr)
        return EXIT_ERROR
    program = _load(args.file)
    texts = args.inputs
    if not texts:
        if sys.stdin is None or sys.stdin.isatty():
            print("rasp run: give at least one INPUT (or pipe inputs, one per line)",
                  file=sys.stderr)
            return EXIT_ERROR
        texts = [line.rstrip("\n") for line in sys.stdin if line.strip()]
    inputs = [parse_input(t, program.vocab) for t in texts]
    results = run(program, inputs, add_bos=True)
    for r in results:
        if args.json:
            record = {"input": list(r.input), "output": r.output}
            if r.logits is not None:
                record["logits"] = r.logits
            print(json.dumps(record, ensure_ascii=False))
        else:
            print(_plain(r.output))
    return EXIT_OK


def cmd_check(args) -> int:
    import grammar
    from . import types as T
    from .expects import check_expects
    try:
        text = args.file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        print(f"rasp check: cannot read {args.file}: {reason}", file=sys.stderr)
        return EXIT_ERROR
    program, diagnostics = grammar.elaborate(text, str(args.file))
    if program is not None and not args.no_expect:
        diagnostics = diagnostics + check_expects(program)
    _print_diagnostics(diagnostics, text, {str(args.file): text})
    errors = [d for d in diagnostics if d.severity != "warning"]
    if errors:
        print(f"{args.file}: {len(errors)} error(s)", file=sys.stderr)
        return EXIT_ERROR
    output = T.output_type(program)
    expects = "" if args.no_expect else f", {len(program.expects)} @expect line(s) hold"
    print(f"ok: {args.file}: {len(program.bindings)} binding(s), output "
          f"{output if output is not None else '(none)'}{expects}")
    return EXIT_OK


_LOSSY = re.compile(r"#|\bdef\b|\bfor\b|\blambda\b")
_STRINGS = re.compile(r'"(?:[^"\\\n]|\\.)*"|\'(?:[^\'\\\n]|\\.)*\'')


def cmd_fmt(args) -> int:
    from .printer import pretty
    from .tables import atomic_write_text, write_program
    program = _load(args.file)
    original = program.source or ""
    if args.simplify:
        from .passes import simplify
        program = simplify(program)
        missing = _unsaved_tables(program, args.file)
        if missing and not (args.write or args.check):
            print(f"rasp fmt: the simplified program has new tables ({', '.join(missing)}); "
                  "use --write to save them with it", file=sys.stderr)
            return EXIT_ERROR
    text = pretty(program)
    if args.check:
        if text != original:
            print(f"{args.file}: not in canonical form", file=sys.stderr)
            return EXIT_ERROR
        return EXIT_OK
    if args.write:
        if text == original:
            return EXIT_OK
        if _LOSSY.search(_STRINGS.sub('""', original)):
            print(f"rasp fmt: refusing to rewrite {args.file}: the canonical form would drop its "
                  "comments, functions or loops. Use `rasp fmt FILE > NEW.rasp` instead.",
                  file=sys.stderr)
            return EXIT_ERROR
        try:
            if args.simplify:
                write_program(program, args.file)      # the side-file first, then the text
            else:
                atomic_write_text(args.file, text)
        except OSError as exc:     # the old file is left whole (see atomic_write_bytes)
            print(f"rasp fmt: cannot write {args.file}: {exc.strerror or exc}", file=sys.stderr)
            return EXIT_ERROR
        return EXIT_OK
    sys.stdout.write(text)
    return EXIT_OK


def _unsaved_tables(program, path: Path) -> list[str]:
    """Named tables of `program` that its side-file lacks or holds with other values."""
    from .printer import named_tables
    from .tables import read_tables, side_file
    tables = named_tables(program)
    saved = read_tables(side_file(path)) if tables and side_file(path).exists() else {}
    return sorted(name for name, m in tables.items() if saved.get(name) != m)


def cmd_repl(args) -> int:
    from .repl import repl
    return repl(args.file)


def _progress(args) -> bool:
    return not args.quiet and sys.stderr is not None and sys.stderr.isatty()


def _print_buckets(accuracy: dict, recorded: dict | None = None) -> None:
    for bucket, value in accuracy.items():
        extra = ""
        if recorded and bucket in recorded:
            extra = f"   (acc.txt {recorded[bucket]:.4f}, diff {value - recorded[bucket]:+.4f})"
        print(f"  {bucket:<10} {value:.4f}{extra}")


def cmd_eval(args) -> int:
    import torch

    from extractor.checkpoint_tasks import load_with_task, recorded_accuracy
    from extractor.evaluate import evaluate, parse_buckets
    if args.n < 1 or args.seed < 0:
        raise RaspError([Diagnostic("T404", "--n must be at least 1 and --seed at least 0")])
    torch.set_num_threads(min(2, torch.get_num_threads()))
    model, task = load_with_task(args.checkpoint, args.task)
    buckets = parse_buckets(args.lengths, task.test_buckets)
    accuracy = evaluate(model, task, buckets, args.n, args.seed, progress=_progress(args))
    if args.json:
        print(json.dumps(accuracy))
        return EXIT_OK
    print(f"{args.checkpoint}: task {task.name} ({task.mode}), up to {args.n} sequences per "
          f"bucket, seed {args.seed}")
    _print_buckets(accuracy, recorded_accuracy(args.checkpoint))
    return EXIT_OK


def cmd_train(args) -> int:
    from extractor.evaluate import check_buckets, parse_buckets
    from extractor.registry import get_task
    from extractor.train import TrainConfig, save_trained, train
    task = get_task(args.task)
    try:
        config = TrainConfig(layers=args.layers, heads=args.heads, d_model=args.d_model,
                             lr=args.lr, dropout=args.dropout, steps=args.steps,
                             batch_size=args.batch_size, seed=args.seed,
                             eval_every=args.eval_every, eval_n=args.n)
    except (TypeError, ValueError) as exc:
        raise RaspError([Diagnostic("T406", f"bad training option: {exc}")]) from None
    if args.d_model % args.heads:
        raise RaspError([Diagnostic("T406", f"--d-model {args.d_model} is not divisible by "
                                    f"--heads {args.heads}")])
    if args.threads < 1:
        raise RaspError([Diagnostic("T406", "--threads must be at least 1")])
    buckets = parse_buckets(args.lengths, task.test_buckets)
    check_buckets(task, buckets + [tuple(task.train_lengths)])
    result = train(task, config, buckets, progress=_progress(args), threads=args.threads)
    save_trained(result, task, config, args.output)
    if args.json:
        print(json.dumps({"task": task.name, "arch": config.arch_name, "steps": result.steps,
                          "seconds": round(result.seconds, 2),
                          "stopped_early": result.stopped_early,
                          "accuracy": result.accuracy, "output": str(args.output)}))
        return EXIT_OK
    ended = ("in-distribution accuracy reached 1.0" if result.stopped_early
             else "step limit reached")
    print(f"trained {task.name} {config.arch_name}: {result.steps} steps in "
          f"{result.seconds:.1f} s ({ended})")
    _print_buckets(result.accuracy)
    print(f"wrote {args.output}")
    return EXIT_OK


def cmd_extract(args) -> int:
    import torch

    from extractor.extract import load_subject
    if (args.n is not None and args.n < 1) or args.seed < 0 or args.fit_steps < 0 or (
            args.max_entries is not None and args.max_entries < 1):
        raise RaspError([Diagnostic("T404", "--n and --max-entries must be at least 1, "
                                    "--seed and --fit-steps at least 0")])
    if not 0 < (args.threshold or 1) <= 1 or args.max_runs < 1 or (
            args.workers is not None and args.workers < 1):
        raise RaspError([Diagnostic("T404", "--threshold must be in (0, 1], --max-runs and "
                                    "--workers at least 1")])
    if args.output.suffix != ".rasp":
        raise RaspError([Diagnostic("X503", f"{args.output}: the program's file name must end "
                                    "in .rasp (its tables go beside it)")])
    if not args.output.parent.is_dir():
        raise RaspError([Diagnostic("X503", f"{args.output.parent}: no such directory")])
    torch.set_num_threads(min(2, torch.get_num_threads()))
    subject = load_subject(args.checkpoint, args.task)
    if args.stage == "full":
        return _extract_full(args, subject)
    if subject.kind == "compiled":
        return _extract_compiled(args, subject)
    return _extract_pruned(args, subject)


def _written(args, subject, result, n: int, bar) -> dict:
    """Write the extracted program and its report (after the round trip with --verify)."""
    from .tables import atomic_write_text, write_program
    write_program(result.program, args.output)
    report = dict(result.report, checkpoint=str(args.checkpoint),
                  program=dict(result.report["program"], file=str(args.output)))
    if args.verify:
        report["roundtrip"] = _round_trip(args, subject, n, bar)
    atomic_write_text(args.output.with_suffix(".report.json"), json.dumps(report, indent=2) + "\n")
    return report


def _extract_compiled(args, subject) -> int:
    """A compiled model's short program (extractor/compiled.py): exact by default."""
    from extractor.compiled import extract_compiled
    bar = _status_line(args)
    try:
        result = extract_compiled(subject, 1.0 if args.threshold is None else args.threshold,
                                  args.seed, progress=bar)
    finally:
        bar(None)
    report = _written(args, subject, result, args.n or 200, bar)
    if args.json:
        print(json.dumps(report))
        return EXIT_OK
    r, inputs = report, report["inputs"]
    print(f"{args.checkpoint}: compiled model, {r['model']['layers']} layers x "
          f"{r['model']['heads']} heads")
    print(f"  {inputs['count']:,} generated inputs of lengths 1-{inputs['max_len']} (all of "
          f"them up to length {inputs['exhaustive_up_to']})")
    stages = r["pruning"].get("stages")
    print("  greedy pruning: " + ", ".join(f"{st['stage']} {st['edges']} edges" for st in stages)
          if stages else f"  pruning: {r['pruning']['method']}")
    print(f"  {r['verdict']}")
    print(f"wrote {args.output} (tables: {args.output.with_suffix('.tables.safetensors').name}, "
          f"report: {args.output.with_suffix('.report.json').name}) in "
          f"{r['seconds']['total']:.0f} s")
    _print_round_trip(report)
    return EXIT_OK


def _extract_pruned(args, subject) -> int:
    from extractor.extract import ExtractSettings, extract_program
    workers = args.workers or min(2, os.cpu_count() or 1)
    settings = ExtractSettings(threshold=0.9 if args.threshold is None else args.threshold,
                               workers=workers, seed=args.seed,
                               n=args.n or (200 if args.quick else 1000), quick=args.quick,
                               max_runs=args.max_runs)
    runs = args.output.with_suffix(".runs")
    bar = _status_line(args)
    try:
        result = extract_program(subject, args.checkpoint, args.task, runs, settings,
                                 progress=bar)
    finally:
        bar(None)
    report = _written(args, subject, result, settings.n, bar)
    if args.json:
        print(json.dumps(report))
        return EXIT_OK
    print(f"{args.checkpoint}: {report['model']['layers']} layers x {report['model']['heads']} "
          f"heads, task {report['task']}")
    print(f"  {len(report['runs'])} pruning runs in {report['seconds']['pruning']:.0f} s; "
          f"frontier (edges: worst-bucket match on the choice set): " + ", ".join(
              f"{p['edges']}: {p['match']:.2f}" for p in report["frontier"]["products"]))
    ev = report["evaluation"]
    print(f"  {report['program']['lines']}-line program; held-out ({ev['sequences_per_bucket']} "
          "sequences per bucket, offset 0):")
    for bucket, r in ev["buckets"].items():
        print(f"    {bucket:<10} match {r['match']:.4f}   task {r['task']:.4f}")
    print(f"  {report['verdict']}")
    print(f"wrote {args.output} (tables: {args.output.with_suffix('.tables.safetensors').name}, "
          f"report: {args.output.with_suffix('.report.json').name}, runs: {runs.name}/) in "
          f"{report['seconds']['total']:.0f} s")
    _print_round_trip(report)
    return EXIT_OK


def _extract_full(args, subject) -> int:
    from extractor.extract import extract_full
    from extractor.paths import MAX_ENTRIES

    from .tables import atomic_write_text, write_program
    bar = _status_line(args)
    try:
        result = extract_full(subject, n=args.n or 2000, seed=args.seed,
                              limit=args.max_entries or MAX_ENTRIES, fit_steps=args.fit_steps,
                              progress=bar)
    finally:
        bar(None)
    write_program(result.program, args.output)
    report = dict(result.report, checkpoint=str(args.checkpoint), program=dict(
        result.report["program"], file=str(args.output)))
    if args.verify:
        report["roundtrip"] = _round_trip(args, subject, args.n or 500, bar)
    atomic_write_text(args.output.with_suffix(".report.json"), json.dumps(report, indent=2) + "\n")
    if args.json:
        print(json.dumps(report))
        return EXIT_OK
    size = report["program"]
    print(f"{args.checkpoint}: {subject.kind} model, {report['model']['layers']} layers x "
          f"{report['model']['heads']} heads" + (f", task {report['task']}" if "task" in report
                                                 else ""))
    lln = report["lln_a"]
    if lln is None:
        print("  no LayerNorm: the program is an exact rewrite of the model")
    else:
        print(f"  LLN-A with {lln['method']} LayerNorm scales; faithfulness "
              f"({lln['sequences_per_bucket']} sequences per bucket, match = same prediction "
              "at every scored position):")
        for bucket, f in lln["faithfulness"].items():
            print(f"    {bucket:<10} match {f['match']:.4f}   KL {f['kl']:.2e}")
    print(f"  program: {size['paths']} paths, {size['score_terms']} score terms, "
          f"{size['table_entries']:,} table entries; built in {report['seconds']['build']:.2f} s")
    print(f"wrote {args.output} (tables: {args.output.with_suffix('.tables.safetensors').name}, "
          f"report: {args.output.with_suffix('.report.json').name})")
    _print_round_trip(report)
    return EXIT_OK


def _round_trip(args, subject, n: int, bar) -> dict:
    """`--verify`: the written program compiled and compared (extractor/roundtrip.py)."""
    from extractor.roundtrip import round_trip
    bar("round trip: compiling the program and comparing")
    try:
        return round_trip(args.output, subject, n=n, seed=args.seed)
    finally:
        bar(None)


def _print_round_trip(report: dict) -> None:
    if "roundtrip" in report:
        from extractor.roundtrip import summary_lines
        print("\n".join(summary_lines(report["roundtrip"])))


def _status_line(args):
    """A one-line progress display on stderr: call with text to update, None to clear."""
    enabled = _progress(args)

    def show(text):
        if not enabled:
            return
        sys.stderr.write("\r\033[K" + (f"extract: {text}" if text else ""))
        sys.stderr.flush()
    return show


def cmd_tasks(args) -> int:
    from extractor.registry import get_task, task_names
    for name in task_names():
        task = get_task(name)
        print(f"{name:<24} {task.mode:<4} {len(task.vocab):>4} tokens  {task.description}")
    return EXIT_OK



# ---------------------------------------------------------------- rasp equiv, rasp verify

EXIT_DIFFERENT, EXIT_FAILED = 1, 2


def _add_verification_commands(sub) -> None:
    """`rasp equiv` (program against program) and `rasp verify` (program against model)."""
    eq = sub.add_parser("equiv", help="check whether two programs agree on every input",
                        description="Decide whether programs A and B give the same output on "
                        "every input of lengths 1..N over their (common) vocabulary, after "
                        "their BOS token if they declare one. Every input is run where all of "
                        "them number at most --bound (a proof up to N); beyond that, longer "
                        "inputs are random and Hypothesis-generated (a search, not a proof). A "
                        "difference is shrunk to a minimal input and printed with both outputs. "
                        "Categorical outputs compare exactly, numbers and vectors within "
                        "--tolerance x max(1, |value|), logits and softmax predictions by the "
                        "decoded token, sigmoid predictions by the set above 1/2. Exit status: "
                        "0 equal, 1 different, 2 error.")
    eq.add_argument("a", type=Path, metavar="A.rasp")
    eq.add_argument("b", type=Path, metavar="B.rasp")
    eq.add_argument("--max-len", type=int, metavar="N",
                    help="longest input (default: the smaller @maxlen, at most 12)")
    eq.add_argument("--examples", type=int, metavar="K", default=None,
                    help="random inputs beyond the exhaustive lengths (default 2000; a tenth as "
                    "many, at most 500, are Hypothesis-generated)")
    eq.add_argument("--bound", type=int, metavar="M", default=None,
                    help="most inputs run exhaustively (default 200,000)")
    eq.add_argument("--tolerance", type=float, default=None,
                    help="relative tolerance for numbers and vectors (default 1e-6)")
    eq.add_argument("--seed", type=int, default=0, help="seed of the random inputs")
    eq.add_argument("--json", action="store_true", help="print the result as one JSON object")
    eq.set_defaults(handler=cmd_equiv)

    ve = sub.add_parser("verify", help="compare a program with a checkpoint",
                        description="Compare PROGRAM with CHECKPOINT (a trained GPT-2 "
                        "checkpoint, or a directory written by `rasp compile`): match accuracy "
                        "per length bucket on the task's evaluation sets (trained checkpoints; "
                        "the paper's metric at the scored positions) and on any sequence over "
                        "the vocabulary of lengths 1..N (exhaustive up to --bound inputs, then "
                        "random and Hypothesis-generated; every position), and the least "
                        "input found on which they differ, shrunk, with both outputs. Exit "
                        "status: 0 no difference found, 1 a difference, 2 error.")
    ve.add_argument("program", type=Path, metavar="PROGRAM")
    ve.add_argument("checkpoint", type=Path, metavar="CHECKPOINT")
    ve.add_argument("--task", metavar="TASK",
                    help="the task of a trained checkpoint (default: its task.json or folder name)")
    ve.add_argument("--n", type=int, default=500, metavar="N",
                    help="task sequences per length bucket (default 500; 0 skips task data)")
    ve.add_argument("--seed", type=int, default=0, help="seed of the task data and random inputs")
    ve.add_argument("--max-len", type=int, metavar="N",
                    help="longest generated input (default: the program's and model's limits, "
                    "at most 12)")
    ve.add_argument("--examples", type=int, metavar="K", default=None,
                    help="random inputs beyond the exhaustive lengths (default 1000; a tenth as "
                    "many, at most 200, are Hypothesis-generated)")
    ve.add_argument("--bound", type=int, metavar="M", default=None,
                    help="most generated inputs run exhaustively (default 20,000)")
    ve.add_argument("--json", action="store_true", help="print the result as one JSON object")
    ve.set_defaults(handler=cmd_verify)


def _failed(exc: RaspError) -> int:
    _print_diagnostics(exc.diagnostics, exc.source)
    return EXIT_FAILED


def _tokens_text(tokens) -> str:
    return json.dumps(list(tokens), ensure_ascii=False, default=str)


def _search_text(s) -> str:
    """How the inputs were chosen, in one line."""
    space = s.space
    if s.stopped and s.found_by == "exhaustive":
        return (f"exhaustive, shortest inputs first, stopped at the first difference "
                f"({s.checked:,} inputs checked, bound {s.bound:,})")
    if s.exhaustive:
        return (f"exhaustive: all {s.checked:,} inputs of lengths {space.min_len}-"
                f"{space.max_len} (bound {s.bound:,})")
    parts = []
    if s.exhaustive_up_to >= space.min_len:
        parts.append(f"exhaustive up to length {s.exhaustive_up_to} "
                     f"({space.total(hi=s.exhaustive_up_to):,} inputs, bound {s.bound:,})")
    else:
        parts.append(f"no length fits the exhaustive bound {s.bound:,}")
    lo = max(s.exhaustive_up_to + 1, space.min_len)
    hypothesis = f" + {s.hypothesis_inputs:,} Hypothesis" if s.hypothesis_inputs else ""
    parts.append(f"property-based for lengths {lo}-{space.max_len}: {s.random_inputs:,} "
                 f"random{hypothesis} inputs")
    return ", ".join(parts)


def _print_counterexample(c, found_by: str | None, found, rounds: int,
                          labels: tuple[str, str]) -> None:
    how = {"exhaustive": "by exhaustive search: every shorter input agrees"}.get(found_by)
    if how is None and found is not None:
        how = (f"by {found_by or 'search'} at length {len(found)}, shrunk in {rounds} round(s) "
               "to a 1-minimal input")
    print(f"  counterexample (length {len(c.input)}" + (f", found {how}" if how else "") + "):")
    width = max(len(label) for label in labels + ("input",)) + 1
    print(f"    {'input:':<{width}} {_tokens_text(c.input)}")
    for label, output in zip(labels, (c.output_a, c.output_b)):
        text = output if isinstance(output, str) else _tokens_text(output)
        print(f"    {label + ':':<{width}} {text}")
    if c.differs_at:
        print(f"    differs at position(s): {', '.join(map(str, c.differs_at))}")


def cmd_equiv(args) -> int:
    import grammar

    from . import equiv
    try:
        a, b = grammar.load(args.a), grammar.load(args.b)
        options = {k: v for k, v in (("bound", args.bound), ("examples", args.examples),
                                     ("tolerance", args.tolerance)) if v is not None}
        result = equiv.equivalent(a, b, args.max_len, seed=args.seed,
                                  names=(str(args.a), str(args.b)), **options)
    except RaspError as exc:
        return _failed(exc)
    status = EXIT_OK if result.equal else EXIT_DIFFERENT
    if args.json:
        print(json.dumps(dict(result.summary(), a=str(args.a), b=str(args.b)),
                         ensure_ascii=False, default=str))
        return status
    s = result.search
    if result.proven:
        print(f"equal: {args.a} and {args.b} agree on every input of length 1-{result.max_len}")
    elif result.equal:
        print(f"no difference found: {args.a} and {args.b} agree on every input checked "
              f"(proven up to length {max(s.exhaustive_up_to, 0)}, searched up to "
              f"{result.max_len})")
    else:
        print(f"different: {args.a} and {args.b} differ")
    print(f"  mode: {_search_text(s)}")
    print(f"  compared: {result.comparison}")
    if result.counterexample is not None:
        _print_counterexample(result.counterexample, s.found_by, s.found, s.shrink_rounds,
                              ("A", "B"))
    return status


def cmd_verify(args) -> int:
    import grammar
    try:
        from extractor import verify
        program = grammar.load(args.program)
        options = {k: v for k, v in (("bound", args.bound), ("examples", args.examples))
                   if v is not None}
        result = verify.verify(program, args.checkpoint, args.task, n=args.n, seed=args.seed,
                               max_len=args.max_len, **options)
    except RaspError as exc:
        return _failed(exc)
    status = EXIT_OK if result.matches else EXIT_DIFFERENT
    if args.json:
        print(json.dumps(dict(result.summary(), program=str(args.program),
                              checkpoint=str(args.checkpoint)), ensure_ascii=False, default=str))
        return status
    what = f"{result.kind} model" + (f", task {result.task} ({result.mode})" if result.task
                                     else "")
    print(f"{args.program} vs {args.checkpoint}: {what}")
    print(f"  compared: {result.comparison}")
    if result.buckets:
        print(f"  task data ({args.n} sequences per bucket, seed {args.seed}):")
        for bucket, value in result.buckets.items():
            if "skipped" in value:
                print(f"    {bucket:<10} skipped: {value['skipped']}")
            else:
                print(f"    {bucket:<10} match {value['match']:.4f}")
    s = result.search
    print(f"  any sequence over the vocabulary ({_search_text(s)}):")
    for bucket, value in result.generated_buckets().items():
        print(f"    {bucket:<10} match {value['match']:.4f}   ({value['sequences']:,} inputs)")
    if result.counterexample is None:
        print("  no difference found")
    else:
        source = result.counterexample_source
        found = s.found if source == s.found_by else None
        _print_counterexample(result.counterexample, None if source == "task data" else source,
                              found, s.shrink_rounds, ("program", "model"))
        if source == "task data":
            print("    (a task sequence on which they differ, shrunk to a 1-minimal input)")
    return status


if __name__ == "__main__":
    sys.exit(main())
