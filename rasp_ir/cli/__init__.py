"""The `rasp` command line: one module per command family, each adding its subcommands.

Commands parse arguments, call the library and print; heavy modules are imported inside
commands so that `rasp --help` is instant."""

from __future__ import annotations

import argparse
import os
import sys

from rasp_ir.cli import checking, compiling, drawing, extraction, language, models
from rasp_ir.cli.common import EXIT_ERROR, EXIT_OK, print_diagnostics
from rasp_ir.diagnostics import RaspError


def main(argv: list[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return EXIT_ERROR
    try:
        return args.handler(args)
    except RaspError as exc:
        print_diagnostics(exc.diagnostics, exc.source)
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
    for family in (language, compiling, models, extraction, checking, drawing):
        family.add_commands(sub)
    return parser
