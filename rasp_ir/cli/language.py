"""`rasp run`, `rasp check`, `rasp fmt` and `rasp repl`: programs as text."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from rasp_ir.cli.common import (
    EXIT_ERROR,
    EXIT_OK,
    load_program,
    parse_input,
    plain,
    print_diagnostics,
    print_result,
    read_inputs,
)


def add_commands(sub) -> None:
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

    fmt = sub.add_parser("fmt", help="print a program in canonical layout",
                         description="Print FILE in canonical layout: spaces, indentation, "
                         "blank lines and comment alignment change; tokens, comments, functions "
                         "and loops stay as written (docs/language.md, Formatting).")
    mode = fmt.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true",
                      help="exit 1 if the file is not formatted")
    mode.add_argument("--write", action="store_true",
                      help="rewrite the file in place")
    fmt.add_argument("--simplify", action="store_true",
                     help="print the simplified IR instead: drop dead bindings and terms that "
                     "add nothing, fold constants (rasp_ir.passes.simplify); functions, loops "
                     "and comments are not kept (--write refuses to drop them); --write "
                     "rewrites the side-file too")
    fmt.add_argument("file", type=Path)
    fmt.set_defaults(handler=cmd_fmt)

    repl = sub.add_parser("repl", help="an interactive RASP session")
    repl.add_argument("file", type=Path, nargs="?", help="a file to load first")
    repl.set_defaults(handler=cmd_repl)


def cmd_run(args) -> int:
    from rasp_ir.interpreter import run
    if args.model is not None:
        return cmd_run_model(args)
    if args.file is None:
        print("rasp run: give a program FILE or --model DIR", file=sys.stderr)
        return EXIT_ERROR
    program = load_program(args.file)
    texts = read_inputs(args)
    if texts is None:
        return EXIT_ERROR
    inputs = [parse_input(t, program.vocab) for t in texts]
    results = run(program, inputs, add_bos=True)
    for r in results:
        if args.json:
            record = {"input": list(r.input), "output": r.output}
            if r.logits is not None:
                record["logits"] = r.logits
            print(json.dumps(record, ensure_ascii=False))
        else:
            print(plain(r.output))
    return EXIT_OK


def cmd_run_model(args) -> int:
    from compiler.compile import load_compiled
    if args.file is not None:           # `rasp run --model DIR hello`: FILE slot holds INPUT
        args.inputs = [str(args.file)] + list(args.inputs)
    compiled = load_compiled(args.model)
    texts = read_inputs(args)
    if texts is None:
        return EXIT_ERROR
    vocab = tuple(compiled.vocab[1:])
    inputs = [parse_input(t, vocab) for t in texts]
    logits = compiled.logits(inputs)
    for seq, scores, decoded in zip(inputs, logits, compiled.run(inputs)):
        record = {"input": list(seq), "output": decoded}
        if compiled.output_kind == "logits":
            record["logits"] = scores.tolist()
        print_result(record, args.json)
    return EXIT_OK


def cmd_check(args) -> int:
    import grammar
    from rasp_ir import types as T
    from rasp_ir.expects import check_expects
    try:
        text = args.file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        print(f"rasp check: cannot read {args.file}: {reason}", file=sys.stderr)
        return EXIT_ERROR
    program, diagnostics = grammar.elaborate(text, str(args.file))
    if program is not None and not args.no_expect:
        diagnostics = diagnostics + check_expects(program)
    print_diagnostics(diagnostics, text, {str(args.file): text})
    errors = [d for d in diagnostics if d.severity != "warning"]
    if errors:
        print(f"{args.file}: {len(errors)} error(s)", file=sys.stderr)
        return EXIT_ERROR
    output = T.output_type(program)
    expects = "" if args.no_expect else f", {len(program.expects)} @expect line(s) hold"
    print(f"ok: {args.file}: {len(program.bindings)} binding(s), output "
          f"{output if output is not None else '(none)'}{expects}")
    return EXIT_OK


_LOSSY = re.compile(r"\bdef\b|\bfor\b|\blambda\b")
_COMMENT = re.compile(r"#[^\n]*")


_STRINGS = re.compile(r'"(?:[^"\\\n]|\\.)*"|\'(?:[^\'\\\n]|\\.)*\'')


def _lossy(original: str, *printed: str) -> bool:
    """Whether rewriting `original` loses what it holds: functions, loops, lambdas, or a
    comment the printer did not write (its own, over table grids and side-file tables, are
    regenerated: they are found in `printed`, the file's program printed)."""
    code = _STRINGS.sub('""', original)
    if _LOSSY.search(code):
        return True
    kept = {c.strip() for text in printed for c in _COMMENT.findall(_STRINGS.sub('""', text))}
    return any(c.strip() not in kept for c in _COMMENT.findall(code))


def cmd_fmt(args) -> int:
    from rasp_ir.printer import pretty
    from rasp_ir.files import atomic_write_text
    from rasp_ir.tables import write_program
    program = load_program(args.file)
    original = program.source or ""
    if args.simplify:
        from rasp_ir.passes import simplify
        as_read = pretty(program)      # with the comments the printer writes
        program = simplify(program)
        missing = _unsaved_tables(program, args.file)
        if missing and not (args.write or args.check):
            print(f"rasp fmt: the simplified program has new tables ({', '.join(missing)}); "
                  "use --write to save them with it", file=sys.stderr)
            return EXIT_ERROR
        text = pretty(program)
    else:
        from grammar.formatter import format_source
        try:
            text = format_source(original)     # layout only: every token and comment kept
        except ValueError as exc:
            print(exc, file=sys.stderr)
            return EXIT_ERROR
    if args.check:
        if text != original:
            print(f"{args.file}: not formatted (`rasp fmt --write {args.file}` formats it)",
                  file=sys.stderr)
            return EXIT_ERROR
        return EXIT_OK
    if args.write:
        if text == original:
            return EXIT_OK
        if args.simplify and _lossy(original, as_read, text):
            print(f"rasp fmt: refusing to rewrite {args.file}: the simplified form would drop "
                  "its comments, functions or loops. Use `rasp fmt --simplify FILE > NEW.rasp` "
                  "instead.", file=sys.stderr)
            return EXIT_ERROR
        try:
            if args.simplify:
                write_program(program, args.file)      # the side-file first, then the text
            else:
                atomic_write_text(args.file, text)
        except OSError as exc:     # the old file is left whole (see rasp_ir/files.py)
            print(f"rasp fmt: cannot write {args.file}: {exc.strerror or exc}", file=sys.stderr)
            return EXIT_ERROR
        return EXIT_OK
    sys.stdout.write(text)
    return EXIT_OK


def _unsaved_tables(program, path: Path) -> list[str]:
    """Named tables of `program` that its side-file lacks or holds with other values."""
    from rasp_ir.printer import named_tables
    from rasp_ir.tables import read_tables, side_file
    tables = named_tables(program)
    saved = read_tables(side_file(path)) if tables and side_file(path).exists() else {}
    return sorted(name for name, m in tables.items() if saved.get(name) != m)


def cmd_repl(args) -> int:
    from rasp_ir.cli.repl import repl
    return repl(args.file)
