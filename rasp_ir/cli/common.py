"""What every command shares: exit codes, registering a subcommand, diagnostics, reading
programs and inputs, the JSON envelope, printing.

Exit codes (docs/cli.md): 0 success, 1 a finding (a difference, a failed check, an unmet
threshold), 2 a usage or input error (argparse's own code for usage errors; also a file that
cannot be read or parsed, an input outside the vocabulary, an internal error).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

EXIT_OK, EXIT_FINDING, EXIT_INPUT = 0, 1, 2
EXIT_DIFFERENT = EXIT_FINDING          # equiv/verify: a difference found
EXIT_FAILED = EXIT_INPUT               # the command could not do its job

JSON_SCHEMA_VERSION = 1                # docs/cli.schema.json; raised when a field changes meaning
STDIN = "-"                            # a program read from standard input


# ------------------------------------------------------------------ registering subcommands

class CommandParser(argparse.ArgumentParser):
    """A subcommand's parser. Options may come anywhere among the positionals (`rasp run FILE
    --json INPUT`, parsed with argparse's intermixed parsing), and an argument it does not know
    is reported with this subcommand's usage, exit status 2 (argparse would otherwise pass it up
    to `rasp`'s own parser, whose usage says nothing about the subcommand).

    `rasp`'s subparsers use this class, so every `sub.add_parser(...)` gets it; `add_command`
    adds the options every command shares."""

    _intermixing = False

    def parse_known_args(self, args=None, namespace=None):
        if self._intermixing:            # the inner passes of parse_known_intermixed_args
            return super().parse_known_args(args, namespace)
        self._intermixing = True
        try:
            namespace, extras = self.parse_known_intermixed_args(args, namespace)
        finally:
            self._intermixing = False
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return namespace, extras


def add_command(sub, name: str, handler, *, help: str, description: str | None = None,
                json_help: str | None = None, quiet: bool = False) -> argparse.ArgumentParser:
    """Register subcommand `name` of `rasp` and return its parser, to which the caller adds
    the command's own arguments. Every command module has an `add_commands(sub)` function that
    calls this once per command; `rasp_ir/cli/__init__.py` lists the modules.

    handler(args) -> exit status: 0 success, 1 a finding, 2 a usage or input error (raise
    RaspError for the latter: `rasp` prints its diagnostics, and with --json an error
    envelope). Every command gets `--json` (print `emit_json(name, result)` instead of text;
    json_help says what the result holds); quiet=True adds `-q/--quiet` for commands that show
    progress (`progress_for(args, name)`).

    `rasp --help` imports every command module: keep their top-level imports to the standard
    library and this module, and import the rest (rasp_ir.diagnostics included, which brings
    attrs) inside the handler."""
    parser = sub.add_parser(name, help=help, description=description or help)
    parser.add_argument("--json", action="store_true",
                        help=json_help or "print the result as one JSON object (docs/cli.md)")
    if quiet:
        parser.add_argument("-q", "--quiet", action="store_true",
                            help="no progress display on standard error")
    parser.set_defaults(handler=handler)
    return parser


def progress_for(args, command: str):
    """The progress display of a long command (rasp_ir/cli/progress.py): tqdm bars on a
    terminal, plain log lines otherwise, nothing with --quiet."""
    from rasp_ir.cli.progress import Progress
    return Progress(command, quiet=getattr(args, "quiet", False))


# ------------------------------------------------------------------ the JSON envelope

def json_safe(value):
    """`value` as standard JSON data (rasp_ir/jsondata.py, which PROG.report.json uses too)."""
    from rasp_ir.jsondata import json_safe as safe
    return safe(value)


def diagnostic_json(d) -> dict:
    """One diagnostic in the envelope's `diagnostics` list (docs/cli.md)."""
    s = d.span
    return {"code": d.code, "severity": d.severity, "message": d.message,
            "file": s.file if s else None, "line": s.line if s else None,
            "column": s.column if s else None, "end_line": s.end_line if s else None,
            "end_column": s.end_column if s else None, "hint": d.hint, "note": d.note}


STATUS_OF_EXIT = {EXIT_OK: "ok", EXIT_FINDING: "finding", EXIT_INPUT: "error"}


def envelope(command: str, result=None, *, status: str = "ok", diagnostics=()) -> dict:
    """The one shape of every command's --json output (docs/cli.schema.json): schema version,
    command, status ("ok", "finding" or "error", as exit status 0, 1, 2), the command's
    result (null when it has none, as on an error) and diagnostics."""
    return {"schema": JSON_SCHEMA_VERSION, "command": command, "status": status,
            "result": json_safe(result), "diagnostics": [diagnostic_json(d) for d in diagnostics]}


def emit_json(command: str, result=None, *, status: str = "ok", diagnostics=()) -> None:
    """Print one envelope (`envelope`) as one line of standard JSON on standard output."""
    text = json.dumps(envelope(command, result, status=status, diagnostics=diagnostics),
                      ensure_ascii=False, allow_nan=False)
    print(text, flush=True)


# ------------------------------------------------------------------ diagnostics, programs, inputs

def print_diagnostics(diagnostics: list, source: str | None = None,
                       sources: dict | None = None) -> None:
    """Each diagnostic as text on standard error, with its source line when the text is known
    (`source`, else `sources[file]`, else the file read again). Only the first
    limits.MAX_DIAGNOSTICS_SHOWN are printed, then a line that counts the rest."""
    from rasp_ir.limits import MAX_DIAGNOSTICS_SHOWN
    hidden = len(diagnostics) - MAX_DIAGNOSTICS_SHOWN
    if hidden > 0:
        diagnostics = diagnostics[:MAX_DIAGNOSTICS_SHOWN]
    read: dict = {}
    for d in diagnostics:
        text = source
        if d.span is not None and sources is not None and d.span.file in sources:
            text = sources[d.span.file]
        elif d.span is not None and (text is None or Path(d.span.file).is_absolute()):
            # a loaded library's spans name it by its absolute path (the program's own name
            # it as given): show the library's line, never the main file's line of that number
            if d.span.file not in read:
                read[d.span.file] = _file_text(d.span.file)
            text = read[d.span.file]
        print(d.render(text), file=sys.stderr)
        print(file=sys.stderr)
    if hidden > 0:
        print(f"… and {hidden:,} more diagnostic(s) not shown (--json lists them all)",
              file=sys.stderr)


def _file_text(path: str) -> str | None:
    """A source file's text for showing a line of it (at most MAX_PROGRAM_BYTES read), or
    None when it cannot be read."""
    from rasp_ir.limits import MAX_PROGRAM_BYTES
    try:
        with open(path, "rb") as f:
            return f.read(MAX_PROGRAM_BYTES).decode("utf-8", errors="replace")
    except OSError:
        return None


_stdin_text: str | None = None


def read_stdin_program() -> str:
    """The program text on standard input (read once per process)."""
    global _stdin_text
    if _stdin_text is None:
        if sys.stdin is None:
            _stdin_text = ""
        else:           # read up to limits.MAX_PROGRAM_BYTES: E111 past it
            from rasp_ir.sources import read_source
            _stdin_text = read_source("<stdin>", getattr(sys.stdin, "buffer", sys.stdin))
    return _stdin_text


def program_name(path) -> str:
    """The name diagnostics give a program: its path, or <stdin> for `-`."""
    return "<stdin>" if str(path) == STDIN else str(path)


def read_program_text(path) -> str:
    """The text of a program file, or of standard input for `-`; RaspError (E252, E106) when it
    cannot be read, E111 past limits.MAX_PROGRAM_BYTES (`/dev/zero` is not read forever)."""
    from rasp_ir.sources import read_source
    if str(path) == STDIN:
        return read_stdin_program()
    return read_source(path)


def load_program(path: Path):
    """The program in a .rasp file (read back from rasp_ir/program_cache.py when unchanged),
    or on standard input for `-`."""
    if str(path) == STDIN:
        import grammar
        return grammar.parse(read_stdin_program(), "<stdin>")
    from rasp_ir import program_cache
    return program_cache.load(path, front_end)


def front_end(text: str, name: str) -> tuple:
    """`grammar.elaborate`, imported only on a program-cache miss (rasp_ir/program_cache.py):
    a cached `rasp run` never loads Lark or the grammar."""
    import grammar
    return grammar.elaborate(text, name)


def parse_input(text: str, vocab: tuple | None) -> list:
    """A command-line input: a JSON list of tokens; else, where the vocabulary has tokens longer
    than one character, tokens separated by spaces; else a string of characters. Tokens are
    matched to the vocabulary's spelling (3 -> "3" when the vocabulary holds strings)."""
    from rasp_ir.diagnostics import Diagnostic, RaspError
    tokens = None
    if text.lstrip().startswith("["):
        try:
            value = json.loads(text, parse_int=_input_int)
        except json.JSONDecodeError as exc:
            raise RaspError([Diagnostic("R233", f"input {text!r} is not a JSON list: {exc.msg} "
                                        f"at column {exc.colno}")]) from None
        except ValueError as exc:       # _input_int: an integer past the digits limit
            raise RaspError([Diagnostic("R233", f"input {text[:40]!r}…: {exc}")]) from None
        if not isinstance(value, list) or any(isinstance(v, (list, dict)) for v in value):
            raise RaspError([Diagnostic("R233", f"input {text!r} must be a flat JSON list")])
        tokens = value
    if tokens is None:
        if vocab and any(isinstance(v, str) and len(v) > 1 for v in vocab):
            # a vocabulary of words (`<bos>`, `17`): tokens are separated by spaces
            tokens = text.split()
        elif text:
            return list(text)
    if not tokens:
        raise RaspError([Diagnostic("R234", f"input {text!r} is empty; sequences need at least "
                                    "one token")])
    if vocab is None:
        return tokens
    known = set(vocab)
    by_text = {str(v): v for v in vocab}
    return [t if t in known else by_text.get(str(t), t) for t in tokens]


def _input_int(digits: str) -> int:
    from rasp_ir.limits import MAX_LITERAL_DIGITS
    if len(digits.lstrip("-")) > MAX_LITERAL_DIGITS:
        raise ValueError(f"an integer of {len(digits.lstrip('-')):,} digits; the limit is "
                         f"{MAX_LITERAL_DIGITS:,} (rasp_ir/limits.py)")
    return int(digits)


def plain(values) -> str:
    if values and all(isinstance(v, str) and len(v) == 1 for v in values):
        return "".join(values)
    return json.dumps(rounded(values), ensure_ascii=False)


def rounded(value):
    if isinstance(value, float):
        return round(value, 3)
    if isinstance(value, list):
        return [rounded(v) for v in value]
    return value


def read_inputs(args) -> list[tuple[int, str]] | None:
    """(number, text) of each input: the INPUT arguments, numbered from 1, or, with none or a
    lone `-`, each non-blank line of standard input numbered by its line (blank lines are not
    inputs, but they count, so "input 7" is line 7 of the file piped in); None (with a
    message) when there are none."""
    texts = list(args.inputs)
    if texts and texts != [STDIN]:
        return list(enumerate(texts, start=1))
    if sys.stdin is None or (not texts and sys.stdin.isatty()):
        print("rasp run: give at least one INPUT (or pipe inputs, one per line)",
              file=sys.stderr)
        return None
    return [(number, line.rstrip("\r\n")) for number, line in enumerate(sys.stdin, start=1)
            if line.strip()]


def print_buckets(accuracy: dict, recorded: dict | None = None) -> None:
    for bucket, value in accuracy.items():
        extra = ""
        if recorded and bucket in recorded:
            extra = f"   (acc.txt {recorded[bucket]:.4f}, diff {value - recorded[bucket]:+.4f})"
        print(f"  {bucket:<10} {value:.4f}{extra}")


def tokens_text(tokens) -> str:
    return json.dumps(list(tokens), ensure_ascii=False, default=str)
