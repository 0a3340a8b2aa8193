"""Library files: the default library (RASP 0.1's rasplib, loaded into every program) and the
files `load "name";` finds next to the program or among the packaged libraries."""

from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path

from rasp_ir import limits
from rasp_ir.diagnostics import RaspError

from .builtins import builtin_env
from .elaborate import Elaborator
from .parser import parse_tree
from .values import Env, Issue

DEFAULT_LIBRARY = "rasplib"


def packaged_library_dir() -> Path:
    return Path(str(resources.files("rasp_ir").joinpath("lib")))


def find_library(name: str, search_dirs: tuple) -> Path | None:
    for directory in (*search_dirs, packaged_library_dir()):
        candidate = Path(directory) / f"{name}.rasp"
        if candidate.is_file():
            return candidate.resolve()
    return None


@functools.cache
def base_environment() -> tuple[Env, dict]:
    """The environment every program starts in, and the library bindings it can use."""
    path = find_library(DEFAULT_LIBRARY, ())
    exports, bindings = _elaborate_library(DEFAULT_LIBRARY, path, builtin_env(), {})
    library = {b.name: b for b in bindings}
    return Env(parent=builtin_env(), values=exports), library


def load_library(name: str, search_dirs: tuple, span) -> tuple[dict, list]:
    """(exported names, bindings) of the library `name`; E252 if it cannot be found."""
    path = find_library(name, search_dirs)
    if path is None:
        where = ", ".join(str(d) for d in (*search_dirs, packaged_library_dir()))
        raise Issue("E252", f"cannot find library {name!r}", span,
                    f"looked for {name}.rasp in {where}")
    if path in _LOADING:
        chain = " -> ".join(p.name for p in (*_LOADING, path))
        raise Issue("E244", f"library {name!r} loads itself ({chain})", span,
                    "remove the `load` that closes the cycle")
    if len(_LOADING) >= limits.MAX_LOAD_DEPTH:
        raise Issue("E243", f"libraries load each other more than {limits.MAX_LOAD_DEPTH} deep",
                    span, note="rasp_ir/limits.py MAX_LOAD_DEPTH; docs/limits.md")
    base, library = base_environment()
    _LOADING.append(path)
    try:
        return _elaborate_library(name, path, base, library)
    finally:
        _LOADING.pop()


_LOADING: list[Path] = []      # the libraries being elaborated, outermost first


@functools.cache
def _cached(name: str, path: Path, mtime: float):
    base, library = base_environment() if name != DEFAULT_LIBRARY else (builtin_env(), {})
    return _run(name, path, base, library)


def _elaborate_library(name, path, base, library):
    if name == DEFAULT_LIBRARY and base is builtin_env():
        return _run(name, path, base, library)
    return _cached(name, path, path.stat().st_mtime)


def _run(name, path, base, library):
    from grammar import read_source
    text = read_source(path)
    tree = parse_tree(text, str(path))
    el = Elaborator(str(path), text, base, origin=name, search_dirs=(str(path.parent),),
                    library=library, loader=load_library)
    el.run(tree)
    errors = [d for d in el.diagnostics if d.severity != "warning"]
    if errors:
        raise RaspError(errors, text)
    exports = {k: v for k, v in el.env.values.items() if not k.startswith("_")}
    return exports, el.bindings
