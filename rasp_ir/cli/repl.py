"""`rasp repl`: statements accumulate into one program; `prog("input");` prints its values."""

from __future__ import annotations

import sys
from pathlib import Path

from rasp_ir.diagnostics import RaspError

BANNER = ("rasp repl: end statements with `;`. `reverse(\"abc\");` runs a program on an input. "
          "Type `exit` to leave.")


def _complete(text: str) -> bool:
    """Whether `text` is a whole statement (brackets balanced and ends with `;` or `}`)."""
    depth = sum(text.count(c) for c in "([{") - sum(text.count(c) for c in ")]}")
    stripped = text.rstrip()
    return depth <= 0 and (stripped.endswith(";") or stripped.endswith("}"))


def show(value) -> str:
    from grammar.values import Builtin, Function, Term
    from rasp_ir.printer import expr
    if isinstance(value, Term):
        from rasp_ir import types as T
        return f"{T.describe(value.type)} : {value.type} = {expr(value.node)}"
    if isinstance(value, (Function, Builtin)):
        return f"<function {value.name}>"
    return repr(value)


def repl(path: Path | None = None, stdin=None, stdout=None) -> int:
    import grammar
    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    session = grammar.Session()
    interactive = stdin.isatty()
    if path is not None:
        try:
            session.run(path.read_text(encoding="utf-8"))
        except (RaspError, OSError) as exc:
            print(exc.render() if isinstance(exc, RaspError) else exc, file=sys.stderr)
    if interactive:
        print(BANNER, file=stdout)
    buffer = ""
    while True:
        if interactive:
            stdout.write(">> " if not buffer else ".. ")
            stdout.flush()
        line = stdin.readline()
        if not line:
            return 0
        if not buffer and line.strip() in ("exit", "quit", "exit()", "quit()"):
            return 0
        buffer += line
        if not _complete(buffer):
            continue
        text, buffer = buffer, ""
        try:
            for value in session.run(text):
                if value is not None:
                    print(show(value), file=stdout)
        except RaspError as exc:
            print(exc.render(), file=stdout)
