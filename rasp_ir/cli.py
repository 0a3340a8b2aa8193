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

    ex = sub.add_parser("extract", help="rewrite a checkpoint as a RASP program",
                        description="Rewrite CHECKPOINT (a trained GPT-2 checkpoint, or a model "
                        "directory written by `rasp compile`) as a D-RASP program. Stage "
                        "`full`: LayerNorm is linearised (one scale per LayerNorm, estimated on "
                        "task data; its faithfulness to the original model is measured per "
                        "length bucket), then every path through the model becomes a variable "
                        "and every product of weights a table. The program computes the "
                        "linearised model's logits exactly. Writes PROG, its tables beside it "
                        "(PROG.tables.safetensors) and a report (PROG.report.json).")
    ex.add_argument("checkpoint", type=Path, metavar="CHECKPOINT")
    ex.add_argument("--task", metavar="TASK",
                    help="the task of a trained checkpoint (default: its task.json or folder name)")
    ex.add_argument("--stage", choices=["full"], default="full",
                    help="full: the exact, unpruned program (the only stage so far)")
    ex.add_argument("-o", "--output", type=Path, required=True, metavar="PROG.rasp")
    ex.add_argument("--n", type=int, default=2000, metavar="N",
                    help="sequences per bucket for the LLN-A faithfulness (default 2000)")
    ex.add_argument("--seed", type=int, default=0, help="seed of the task data (default 0)")
    ex.add_argument("--fit-steps", type=int, default=100, metavar="N",
                    help="gradient steps refining the LLN-A scales; 0 keeps the averaged "
                    "variance (default 100)")
    ex.add_argument("--max-entries", type=int, default=None, metavar="N",
                    help="refuse programs whose tables hold more numbers (default 20,000,000)")
    ex.add_argument("--json", action="store_true", help="print the report as JSON")
    ex.add_argument("--quiet", action="store_true", help="no progress display")
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

    from extractor.extract import extract_full, load_subject
    from extractor.paths import MAX_ENTRIES

    from .tables import atomic_write_text, write_program
    if args.n < 1 or args.seed < 0 or args.fit_steps < 0 or (
            args.max_entries is not None and args.max_entries < 1):
        raise RaspError([Diagnostic("T404", "--n and --max-entries must be at least 1, "
                                    "--seed and --fit-steps at least 0")])
    if args.output.suffix != ".rasp":
        raise RaspError([Diagnostic("X503", f"{args.output}: the program's file name must end "
                                    "in .rasp (its tables go beside it)")])
    if not args.output.parent.is_dir():
        raise RaspError([Diagnostic("X503", f"{args.output.parent}: no such directory")])
    torch.set_num_threads(min(2, torch.get_num_threads()))
    subject = load_subject(args.checkpoint, args.task)
    bar = _status_line(args)
    try:
        result = extract_full(subject, n=args.n, seed=args.seed,
                              limit=args.max_entries or MAX_ENTRIES, fit_steps=args.fit_steps,
                              progress=bar)
    finally:
        bar(None)
    write_program(result.program, args.output)
    report = dict(result.report, checkpoint=str(args.checkpoint), program=dict(
        result.report["program"], file=str(args.output)))
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
    return EXIT_OK


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


if __name__ == "__main__":
    sys.exit(main())
