"""The `rasp` command line: one module per command family, each adding its subcommands.

A family module has one function, `add_commands(sub)`, that registers each of its commands
with `common.add_command(sub, name, handler, help=...)`; adding a family is one entry in
FAMILIES below, with the commands it registers. Every subcommand then takes its options
anywhere among its positionals, reports a usage error with its own usage (exit 2) and has
`--json` (docs/cli.md).

Commands parse arguments, call the library and print; heavy modules (torch, numpy, the
grammar) are imported inside commands so that `rasp --help` is instant. `rasp COMMAND …`
imports only the family that defines COMMAND (`rasp run` reads none of the model commands).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from rasp_ir.cli.common import (EXIT_INPUT, EXIT_OK, CommandParser, emit_json,
                                print_diagnostics)

# family module (rasp_ir/cli/NAME.py) -> the commands it registers, in `rasp --help`'s order;
# tests/test_cli.py checks that each module registers exactly these
FAMILIES = {
    "language": ("run", "check", "fmt", "repl"),
    "compiling": ("compile",),
    "models": ("eval", "train", "tasks"),
    "extraction": ("extract",),
    "checking": ("equiv", "verify"),
    "drawing": ("report", "draw", "attention"),
    "exporting": ("export",),
    "predicting": ("predict",),
}


def main(argv: list[str] | None = None) -> int:
    """Run `rasp` with `argv` (default: the process's arguments); the exit status."""
    parser = build_parser(_families_needed(sys.argv[1:] if argv is None else argv))
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:            # --help and --version (0), usage errors (2)
        return exc.code if isinstance(exc.code, int) else EXIT_OK
    if not getattr(args, "command", None):
        parser.print_help(sys.stderr)
        return EXIT_INPUT
    from rasp_ir.limits import RECURSION_LIMIT
    # the passes walk a statement's tree recursively; limits.MAX_NESTING keeps it within this
    sys.setrecursionlimit(max(sys.getrecursionlimit(), RECURSION_LIMIT))
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return EXIT_OK
    except Exception as exc:
        from rasp_ir.diagnostics import RaspError
        if isinstance(exc, RaspError):
            print_diagnostics(exc.diagnostics, exc.source)
            if getattr(args, "json", False):
                emit_json(args.command, None, status="error", diagnostics=exc.diagnostics)
            return EXIT_INPUT
        if os.environ.get("RASP_DEBUG"):     # a bug of ours: say so plainly
            raise
        print(f"rasp: internal error ({type(exc).__name__}: {exc}). This is a bug in rasp-ir; "
              "rerun with RASP_DEBUG=1 for the traceback and report it.", file=sys.stderr)
        return EXIT_INPUT


class _Version(argparse.Action):
    """--version, read from the installed package's metadata only when asked for."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS,
                 help="print the version of rasp-ir and exit"):
        super().__init__(option_strings, dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        from rasp_ir import version
        print(f"rasp {version()}")
        parser.exit()


def _families_needed(argv: list[str]) -> tuple[str, ...]:
    """The family modules `argv` needs: the one that defines its command; none for a bare
    `rasp --version`; every one otherwise (`rasp --help` lists them all, an unknown command's
    error lists the choices)."""
    at = next((i for i, a in enumerate(argv) if not a.startswith("-")), len(argv))
    command, before = (argv[at] if at < len(argv) else None), set(argv[:at])
    if {"-h", "--help"} & before:             # `rasp -h run` is `rasp --help`
        return tuple(FAMILIES)
    for family, commands in FAMILIES.items():
        if command in commands:
            return (family,)
    if command is None and "--version" in before:
        return ()
    return tuple(FAMILIES)


def build_parser(families=tuple(FAMILIES)) -> argparse.ArgumentParser:
    """`rasp`'s parser with the subcommands of `families` (names of FAMILIES; default all)."""
    parser = argparse.ArgumentParser(
        prog="rasp", description="RASP programs and transformers: run, check and format "
        ".rasp files; compile them to weights; train, evaluate and extract checkpoints.",
        epilog="Exit status: 0 success, 1 a finding (a difference, a failed check, an unmet "
        "threshold), 2 a usage or input error. `rasp COMMAND --help` describes a command; "
        "docs/cli.md has the reference and the --json contract.")
    parser.add_argument("--version", action=_Version)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=CommandParser)
    for family in families:
        importlib.import_module(f"rasp_ir.cli.{family}").add_commands(sub)
    return parser
