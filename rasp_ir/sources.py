"""Reading a program's text within limits.MAX_PROGRAM_BYTES.

Kept apart from the front end (grammar/, which imports Lark) so that a command whose program
is already in the cache of elaborated programs (rasp_ir/program_cache.py) reads its text
without loading the parser.
"""

from __future__ import annotations

from rasp_ir import limits
from rasp_ir.diagnostics import Diagnostic, RaspError


def read_source(path, stream=None) -> str:
    """The text of a program file (or of the binary `stream`, e.g. standard input), read up to
    limits.MAX_PROGRAM_BYTES: RaspError E111 past it (so `/dev/zero` is refused, not read
    forever), E252 when it cannot be read, E106 when it is not UTF-8."""
    cap = limits.MAX_PROGRAM_BYTES
    try:
        if stream is not None:
            data = stream.read(cap + 1)
        else:
            with open(path, "rb") as f:
                data = f.read(cap + 1)
    except OSError as exc:
        raise RaspError([Diagnostic("E252", f"cannot read {path}: {exc.strerror or exc}")]) \
            from None
    if len(data) > cap:
        raise RaspError([too_big(str(path))])
    if isinstance(data, str):          # a text stream (a test's StringIO)
        return data
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RaspError([Diagnostic("E106", f"{path} is not UTF-8 text (byte {exc.start})")]) \
            from None


def too_big(file: str) -> Diagnostic:
    """E111: the program `file` is past limits.MAX_PROGRAM_BYTES."""
    cap = limits.MAX_PROGRAM_BYTES
    return Diagnostic("E111", f"{file} is larger than {cap:,} bytes, the limit on a program",
                      note="rasp_ir/limits.py MAX_PROGRAM_BYTES; docs/limits.md",
                      hint="split it into libraries (`load`), or keep large tables in a "
                      "side-file (`table(\"name\")`)")
