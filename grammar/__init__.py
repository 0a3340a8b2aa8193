"""The .rasp front end: text to a typed IR program (`parse`, `load`) and a REPL session."""

from __future__ import annotations

import contextlib
import functools
import sys
from pathlib import Path

from rasp_ir import limits
from rasp_ir import nodes as ir
from rasp_ir.diagnostics import Diagnostic, RaspError
from rasp_ir.sources import read_source, too_big

from .elaborate import Elaborator
from .builtins import builtin_env
from .library import DEFAULT_LIBRARY, base_environment, find_library, load_library
from .parser import parse_tree, precedence_warnings

__all__ = ["parse", "load", "elaborate", "read_source", "Session"]


def elaborate(text: str, file: str = "<string>") -> tuple[ir.Program | None, list[Diagnostic]]:
    """Every diagnostic of `text`, and the program when there is no error."""
    too_big = size_problem(text, file)
    if too_big is not None:
        return None, [too_big]
    with deep_stack():
        try:
            tree = parse_tree(text, file)
        except RaspError as exc:
            return None, exc.diagnostics
        el = _elaborator(text, file)
        try:
            el.run(tree)
        except RecursionError:       # a safety net: the caps in rasp_ir/limits.py come first
            return None, [Diagnostic("E111", "the program nests too deeply to elaborate",
                                     note="rasp_ir/limits.py; docs/limits.md")]
        if el.directives.get("compat") is None:
            el.diagnostics += precedence_warnings(tree, text, file)
    errors = [d for d in el.diagnostics if d.severity != "warning"]
    return (None if errors else el.program()), el.diagnostics


def parse(text: str, file: str = "<string>") -> ir.Program:
    """The IR program of `text`; raises RaspError listing every error."""
    program, diagnostics = elaborate(text, file)
    if program is None:
        raise RaspError([d for d in diagnostics if d.severity != "warning"], text)
    return program


def load(path) -> ir.Program:
    """The program in a .rasp file (its side-file of tables, if any, is read on demand)."""
    path = Path(path)
    return parse(read_source(path), str(path))


def size_problem(text: str, file: str) -> Diagnostic | None:
    """E111 when `text` is longer than limits.MAX_PROGRAM_BYTES (in UTF-8), else None."""
    cap = limits.MAX_PROGRAM_BYTES
    if len(text) <= cap // 4 or len(text.encode("utf-8", "surrogatepass")) <= cap:
        return None
    return too_big(file)


@contextlib.contextmanager
def deep_stack():
    """Python's recursion limit raised to limits.RECURSION_LIMIT while the front end walks a
    program (the depth caps of rasp_ir/limits.py keep inside it), then put back."""
    before = sys.getrecursionlimit()
    if before < limits.RECURSION_LIMIT:
        sys.setrecursionlimit(limits.RECURSION_LIMIT)
    try:
        yield
    finally:
        if sys.getrecursionlimit() == limits.RECURSION_LIMIT and before < limits.RECURSION_LIMIT:
            sys.setrecursionlimit(before)


@functools.cache
def _default_library() -> Path | None:
    """The packaged default library's file (looked up once, not at every parse)."""
    return find_library(DEFAULT_LIBRARY, ())


def _elaborator(text: str, file: str) -> Elaborator:
    search = (str(Path(file).parent),) if file != "<string>" else (".",)
    if file != "<string>" and Path(file).resolve() == _default_library():
        # the default library's own file, read as a program: on the builtins alone, as it is
        # read when loaded, so the names it defines are its own, not a clash with itself
        el = Elaborator(file, text, builtin_env(), search_dirs=search, loader=load_library)
        el.reserved = el.reserved - set(base_environment()[0].values)
        return el
    base, library = base_environment()
    return Elaborator(file, text, base, search_dirs=search, library=library, loader=load_library)


class Session:
    """A REPL: statements accumulate into one program; `run` returns expression values."""

    def __init__(self, file: str = "<repl>"):
        self.file = file
        self.source = ""
        self.elaborator = _elaborator("", file)

    def run(self, text: str, file: str | None = None) -> list:
        """Elaborate more statements; raise RaspError with their diagnostics on error.
        The session's lines are numbered on from its earlier input (`self.source`), so a
        diagnostic names the line where its text was typed, this time or before; with `file`,
        the statements are that file's, numbered as in it (a file loaded into the session)."""
        el = self.elaborator
        if file is None:
            padded = "\n" * self.source.count("\n") + text
            self.source += text + "\n"
            shown, name, search = self.source, self.file, el.search_dirs
        else:
            padded = shown = text
            name, search = file, (str(Path(file).parent),)
        compat = el.directives.get("compat") is not None or None
        too_big = size_problem(padded, name)
        if too_big is not None:
            raise RaspError([too_big])
        before = len(el.diagnostics)
        with deep_stack():
            tree = parse_tree(padded, name, compat)
            el.source = self.source
            saved = el.current_file, el.search_dirs
            el.current_file, el.search_dirs = name, search
            try:
                values = el.run(tree)
            except RecursionError:
                raise RaspError([Diagnostic("E111", "the input nests too deeply to elaborate",
                                            note="rasp_ir/limits.py; docs/limits.md")]) from None
            finally:
                el.current_file, el.search_dirs = saved
        new = el.diagnostics[before:]
        errors = [d for d in new if d.severity != "warning"]   # runtime errors (R…) too
        if errors:
            raise RaspError(errors, shown)
        return values

    def program(self) -> ir.Program:
        return self.elaborator.program()
