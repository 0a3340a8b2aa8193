"""`rasp run`, `rasp check`, `rasp fmt` and `rasp repl`: programs as text."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from rasp_ir.cli.common import (
    EXIT_FAILED,
    EXIT_FINDING,
    EXIT_INPUT,
    EXIT_OK,
    STDIN,
    add_command,
    emit_json,
    front_end,
    load_program,
    parse_input,
    plain,
    print_diagnostics,
    program_name,
    read_inputs,
    read_program_text,
)


def add_commands(sub) -> None:
    run = add_command(
        sub, "run", cmd_run, help="evaluate a program's @output on inputs",
        description="Evaluate the @output of FILE on each INPUT. A plain INPUT is a sequence "
        "of characters; a JSON list such as '[3,1,2]' or '[\"<bos>\",\"0\"]' is a sequence of "
        "tokens. Without INPUT, one input per line is read from standard input. With @bos, the "
        "BOS token is prepended to inputs that lack it. An input that fails is reported and the "
        "next one is run; the exit status is then 2.",
        json_help='one JSON envelope per input (JSON Lines); its result holds "input" and '
        '"output", and "probs" (softmax or sigmoid outputs) or "logits" (raw logits)')
    # kept as typed (a Path would turn the first INPUT of `run --model DIR 'a//./'` into 'a')
    run.add_argument("file", nargs="?",
                     help="the program, - for standard input (leave out with --model)")
    run.add_argument("inputs", nargs="*", metavar="INPUT")
    run.add_argument("--model", type=Path, metavar="DIR",
                     help="run a model compiled by `rasp compile` instead of a program")

    check = add_command(
        sub, "check", cmd_check, help="type-check programs and run their @expect lines",
        description="Report every diagnostic of each FILE (- reads standard input); exit 1 if "
        "there is an error or a failing @expect in any of them.",
        json_help="one JSON envelope: result.files lists each file, diagnostics every "
        "diagnostic (code, file, line, column, message, hint)")
    check.add_argument("files", type=Path, nargs="+", metavar="FILE")
    check.add_argument("--no-expect", action="store_true", help="skip the @expect lines")

    fmt = add_command(
        sub, "fmt", cmd_fmt, help="print a program in canonical layout",
        description="Print FILE in canonical layout: spaces, indentation, "
        "blank lines and comment alignment change; tokens, comments, functions "
        "and loops stay as written (docs/language.md, Formatting). Several FILEs are "
        "formatted one after the other; - reads standard input.",
        json_help='one JSON envelope: result.files lists each file with its exit status and, '
        'without --check or --write, its formatted "text"')
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
    fmt.add_argument("files", type=Path, nargs="+", metavar="FILE")

    repl = sub.add_parser("repl", help="an interactive RASP session")
    repl.add_argument("file", type=Path, nargs="?", help="a file to load first")
    repl.set_defaults(handler=cmd_repl)


def cmd_run(args) -> int:
    if args.model is not None:
        return cmd_run_model(args)
    if args.file is None:
        print("rasp run: give a program FILE or --model DIR", file=sys.stderr)
        return EXIT_INPUT
    if str(args.file) == STDIN and (not args.inputs or list(args.inputs) == [STDIN]):
        print("rasp run: the program is read from standard input, so give the INPUTs as "
              "arguments", file=sys.stderr)
        return EXIT_INPUT
    from rasp_ir import types as T
    program = load_program(args.file)
    numbered = read_inputs(args)
    if numbered is None:
        return EXIT_INPUT
    scores = "logits" if isinstance(T.output_type(program), T.Logits) else "probs"

    def evaluate(inputs):
        from rasp_ir.interpreter import run
        return [(r.input, r.output, r.logits) for r in run(program, inputs, add_bos=True)]
    return _run_each(args, numbered, program.vocab, evaluate, scores)


def cmd_run_model(args) -> int:
    from compiler.compile import load_compiled
    if args.file is not None:           # `rasp run --model DIR hello`: FILE slot holds INPUT
        args.inputs = [str(args.file)] + list(args.inputs)
    compiled = load_compiled(args.model)
    numbered = read_inputs(args)
    if numbered is None:
        return EXIT_INPUT
    scores = "probs" if compiled.output_function else "logits"

    def evaluate(inputs):
        logits = compiled.logits(inputs)
        keep = compiled.output_kind == "logits"
        return [(seq, decoded, values.tolist() if keep else None)
                for seq, values, decoded in zip(inputs, logits, compiled.run(inputs))]
    return _run_each(args, numbered, tuple(compiled.vocab[1:]), evaluate, scores)


def _run_each(args, numbered: list[tuple[int, str]], vocab, evaluate, scores: str) -> int:
    """Run every input, in one batch when they all succeed, else one at a time so that each
    failing input is reported (a diagnostic naming the input's number as read_inputs gives
    it, or with --json an error envelope) and the rest still run. `evaluate(inputs)` ->
    [(input, output, scores or None)]; `scores` names the scores in JSON ("probs" or
    "logits"). Exit status 2 when any input failed."""
    from rasp_ir.diagnostics import RaspError
    numbers = [number for number, _ in numbered]
    texts = [text for _, text in numbered]
    parsed: list = []
    for text in texts:
        try:
            parsed.append(parse_input(text, vocab))
        except RaspError as exc:
            parsed.append(exc)
    good = [p for p in parsed if not isinstance(p, RaspError)]
    try:
        results = iter(evaluate(good)) if good else iter(())
        outcomes = [p if isinstance(p, RaspError) else next(results) for p in parsed]
    except RaspError:
        outcomes = [p if isinstance(p, RaspError) else _one(evaluate, p, number)
                    for number, p in zip(numbers, parsed)]
    status = EXIT_OK
    for number, text, outcome in zip(numbers, texts, outcomes):
        if isinstance(outcome, RaspError):
            status = EXIT_INPUT
            # a long input is cut: the diagnostic under this line says what is wrong with it
            shown = repr(text) if len(text) <= 60 else repr(text[:57]) + "…"
            print(f"rasp run: input {number} {shown}:", file=sys.stderr)
            print_diagnostics(outcome.diagnostics, outcome.source)
            if args.json:
                emit_json("run", {"input": text}, status="error",
                          diagnostics=outcome.diagnostics)
            continue
        seq, output, values = outcome
        if args.json:
            record = {"input": list(seq), "output": output}
            if values is not None:
                record[scores] = values
            emit_json("run", record)
        else:
            print(plain(output), flush=True)
    return status


def _one(evaluate, tokens, number: int):
    """One input run alone; its diagnostics say `input NUMBER` (run alone, it is the
    interpreter's input 1)."""
    import attrs

    from rasp_ir.diagnostics import RaspError
    try:
        return evaluate([tokens])[0]
    except RaspError as exc:
        renumbered = [attrs.evolve(d, message=re.sub(r"\binput 1\b", f"input {number}",
                                                     d.message))
                      for d in exc.diagnostics]
        return RaspError(renumbered, exc.source)


def cmd_check(args) -> int:
    from rasp_ir import program_cache
    from rasp_ir import types as T
    from rasp_ir.diagnostics import RaspError
    from rasp_ir.expects import check_expects
    files, everything, status = [], [], EXIT_OK
    for path in args.files:
        name = program_name(path)
        try:
            text = read_program_text(path)
        except RaspError as exc:
            print_diagnostics(exc.diagnostics)
            everything += exc.diagnostics
            files.append({"file": name, "ok": False, "errors": len(exc.diagnostics),
                          "warnings": 0})
            status = EXIT_INPUT
            continue
        # a file's program and warnings are read back when it is unchanged (standard input's
        # never are: there is no file to key them by)
        program, diagnostics = program_cache.elaborate(text, name,
                                                       None if str(path) == STDIN else path,
                                                       front_end)
        if program is not None and not args.no_expect:
            diagnostics = diagnostics + check_expects(program)
        print_diagnostics(diagnostics, text, {name: text})
        everything += diagnostics
        errors = [d for d in diagnostics if d.severity != "warning"]
        entry = {"file": name, "ok": not errors, "errors": len(errors),
                 "warnings": len(diagnostics) - len(errors)}
        files.append(entry)
        if errors:
            print(f"{name}: {len(errors)} error(s)", file=sys.stderr)
            status = max(status, EXIT_FINDING)
            continue
        output = T.output_type(program)
        entry.update(bindings=len(program.bindings),
                     output=None if output is None else str(output),
                     expects=None if args.no_expect else len(program.expects))
        expects = "" if args.no_expect else f", {len(program.expects)} @expect line(s) hold"
        if not args.json:
            print(f"ok: {name}: {len(program.bindings)} binding(s), output "
                  f"{output if output is not None else '(none)'}{expects}")
    if args.json:
        emit_json("check", {"files": files},
                  status={EXIT_OK: "ok", EXIT_FINDING: "finding"}.get(status, "error"),
                  diagnostics=everything)
    return status


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


def _assigned(text: str) -> set[str]:
    """The names a program's top-level statements assign (aliases such as `keep = tokens;`
    too, which the IR holds no binding for)."""
    from grammar.parser import parse_tree
    names = set()
    for item in parse_tree(text).children:
        if getattr(item, "data", None) == "assign":
            names |= {t.children[0].value for t in item.children[0].children
                      if getattr(t, "data", None) == "name"}
    return names


def cmd_fmt(args) -> int:
    """Each file in turn (`_fmt_file`); the worst exit status. With --json the text each
    prints is collected into one envelope."""
    import contextlib
    import io
    if args.write and any(str(f) == STDIN for f in args.files):
        print("rasp fmt: --write cannot rewrite standard input", file=sys.stderr)
        return EXIT_INPUT
    from rasp_ir.diagnostics import RaspError
    status, files, diagnostics = EXIT_OK, [], []
    for path in args.files:
        args.file = path
        out = io.StringIO() if args.json else None
        try:
            with contextlib.redirect_stdout(out) if out else contextlib.nullcontext():
                code = _fmt_file(args)
        except RaspError as exc:         # this file cannot be read or parsed: the next one
            print_diagnostics(exc.diagnostics, exc.source)
            diagnostics += exc.diagnostics
            code = EXIT_INPUT
        entry = {"file": program_name(path), "status": code}
        if out is not None and not (args.check or args.write) and code == EXIT_OK:
            entry["text"] = out.getvalue()
        files.append(entry)
        status = max(status, code)
    if args.json:
        emit_json("fmt", {"files": files}, diagnostics=diagnostics,
                  status={EXIT_OK: "ok", EXIT_FINDING: "finding"}.get(status, "error"))
    return status


def _fmt_file(args) -> int:
    """Format one file: 0 done, 1 `--check` found it unformatted, 2 it cannot be read or
    parsed, or a rewrite was refused (one that would lose bindings, comments, functions or
    tables: the command could not do what was asked, so it is not a finding)."""
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
            return EXIT_FAILED
        text = pretty(program)
    else:
        from grammar.formatter import format_source
        try:
            text = format_source(original)     # layout only: every token and comment kept
        except ValueError as exc:
            print(exc, file=sys.stderr)
            return EXIT_INPUT
    if args.check:
        if text != original:
            print(f"{args.file}: not formatted (`rasp fmt --write {args.file}` formats it)",
                  file=sys.stderr)
            return EXIT_FINDING
        return EXIT_OK
    if args.write:
        if text == original:
            return EXIT_OK
        dropped = _assigned(original) - _assigned(text) if args.simplify else set()
        if dropped:
            print(f"rasp fmt: refusing to rewrite {args.file}: the simplified form would drop "
                  f"the binding(s) {', '.join(sorted(dropped))}. Use `rasp fmt --simplify "
                  "FILE > NEW.rasp` instead.", file=sys.stderr)
            return EXIT_FAILED
        if args.simplify and _lossy(original, as_read, text):
            print(f"rasp fmt: refusing to rewrite {args.file}: the simplified form would drop "
                  "its comments, functions or loops. Use `rasp fmt --simplify FILE > NEW.rasp` "
                  "instead.", file=sys.stderr)
            return EXIT_FAILED
        try:
            if args.simplify:
                write_program(program, args.file)      # the side-file first, then the text
            else:
                atomic_write_text(args.file, text)
        except OSError as exc:     # the old file is left whole (see rasp_ir/files.py)
            print(f"rasp fmt: cannot write {args.file}: {exc.strerror or exc}", file=sys.stderr)
            return EXIT_INPUT
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
