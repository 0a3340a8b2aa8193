"""The .rasp front end: text to a typed IR program (`parse`, `load`) and a REPL session."""

from __future__ import annotations

from pathlib import Path

from rasp_ir import nodes as ir
from rasp_ir.diagnostics import Diagnostic, RaspError

from .elaborate import Elaborator
from .library import base_environment, load_library
from .parser import parse_tree, precedence_warnings

__all__ = ["parse", "load", "elaborate", "Session"]


def elaborate(text: str, file: str = "<string>") -> tuple[ir.Program | None, list[Diagnostic]]:
    """Every diagnostic of `text`, and the program when there is no error."""
    try:
        tree = parse_tree(text, file)
    except RaspError as exc:
        return None, exc.diagnostics
    el = _elaborator(text, file)
    el.run(tree)
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
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RaspError([Diagnostic("E252", f"cannot read {path}: {exc.strerror}")]) from None
    except UnicodeDecodeError as exc:
        raise RaspError([Diagnostic("E106", f"{path} is not UTF-8 text (byte {exc.start})")]) \
            from None
    return parse(text, str(path))


def _elaborator(text: str, file: str) -> Elaborator:
    base, library = base_environment()
    search = (str(Path(file).parent),) if file != "<string>" else (".",)
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
        tree = parse_tree(padded, name, compat)
        before = len(el.diagnostics)
        el.source = self.source
        saved = el.current_file, el.search_dirs
        el.current_file, el.search_dirs = name, search
        try:
            values = el.run(tree)
        finally:
            el.current_file, el.search_dirs = saved
        new = el.diagnostics[before:]
        errors = [d for d in new if d.severity != "warning"]   # runtime errors (R…) too
        if errors:
            raise RaspError(errors, shown)
        return values

    def program(self) -> ir.Program:
        return self.elaborator.program()
