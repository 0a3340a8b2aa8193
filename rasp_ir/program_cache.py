"""Elaborated programs kept on disk, so that `rasp run FILE` or `rasp check FILE` on an
unchanged FILE neither parses nor elaborates it again.

Reading a program back skips the front end entirely: Lark and its tables, the grammar modules
and the elaboration of the default library are never imported or run, which is most of a short
command's start-up (bench/startup.py).

An entry is the program, its diagnostics (warnings) and its key, under a file name
derived from the key; the key is stored whole and compared on reading, so two keys never share
an entry. The key holds everything the elaboration read: the program's text, the name it was read under (its spans
carry it), and the size and modification time of every source file of the front end (grammar/,
rasp_ir/*.py, the packaged libraries, Lark and attrs), so an edited front end or library is
never answered from an older entry. Programs that read other files (a `load`, a side-file of
tables) are not kept. A missing, damaged or foreign entry is recomputed and rewritten; an
unwritable cache directory only costs the time. Entries are not pickles: the IR is written as
plain values (`marshal` of tuples, strings and numbers) and read back into the classes of
rasp_ir/nodes.py and rasp_ir/diagnostics.py only, so an entry someone else wrote can at worst
be wrong, and a wrong entry fails the key comparison; it never runs code.
"""

from __future__ import annotations

import marshal
import os
import sys
import zlib
from pathlib import Path

FORMAT = 3              # raised when an entry's layout changes
MAX_ENTRIES = 256       # past this many entries the oldest quarter is removed


def cache_dir() -> Path | None:
    """Where rasp-ir keeps its caches: $RASP_IR_CACHE, else $XDG_CACHE_HOME/rasp-ir, else
    ~/.cache/rasp-ir. None when RASP_IR_CACHE is empty (no cache) or no home directory is
    known."""
    root = os.environ.get("RASP_IR_CACHE")
    if root == "":
        return None
    if root is None:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"),
                                                                 ".cache")
        if base.startswith("~"):
            return None
        root = os.path.join(base, "rasp-ir")
    return Path(root)


def load(path, front_end):
    """`grammar.load(path)`: the program in a .rasp file, read back from the cache when its
    text and the front end are unchanged, else elaborated by `front_end` (`grammar.elaborate`,
    given by the caller: the ground floor does not import the grammar) and kept when it may
    be. Raises RaspError as grammar.load does."""
    from rasp_ir.diagnostics import RaspError
    from rasp_ir.sources import read_source
    path = Path(path)
    text = read_source(path)
    program, diagnostics = elaborate(text, str(path), path, front_end)
    if program is None:
        raise RaspError([d for d in diagnostics if d.severity != "warning"], text)
    return program


def elaborate(text: str, name: str, path, front_end) -> tuple:
    """`front_end(text, name)` (`grammar.elaborate`): (the program or None, every diagnostic),
    read back from the cache when there is an entry for them. `path` is the file the text was
    read from; a program without one (standard input) is not kept. Only programs without
    errors are kept."""
    root = cache_dir() if path is not None else None
    key = (FORMAT, name, text, _fingerprint()) if root is not None else None
    entry = None if key is None else _entry(root, key)
    kept = _read(entry, key)
    if kept is not None:
        return kept
    program, diagnostics = front_end(text, name)
    if entry is not None and program is not None and _keepable(program, Path(path)):
        _write(entry, key, program, diagnostics)
    return program, diagnostics


def _keepable(program, path: Path) -> bool:
    """Whether `program` read nothing but its text and the default library: no `load` (a
    library file the key does not cover) and no side-file of tables beside it."""
    from rasp_ir.tables import side_file
    return not program.loads and not side_file(path).exists()


def _fingerprint() -> tuple:
    """Python's version and (name, size, modification time) of every file the front end's
    result depends on."""
    import importlib.util
    from rasp_ir import __version__
    here = Path(__file__).parent
    folders = [(here, (".py",)), (here / "lib", (".rasp",))]
    for package in ("grammar", "lark", "attr"):
        spec = importlib.util.find_spec(package)
        if spec is not None and spec.origin:
            folders.append((Path(spec.origin).parent,
                            (".py", ".lark") if package == "grammar" else ("__init__.py",)))
    stamps = []
    for folder, suffixes in folders:
        try:
            with os.scandir(folder) as entries:
                for e in entries:
                    if e.name.endswith(suffixes):
                        st = e.stat()
                        stamps.append((str(folder), e.name, st.st_size, st.st_mtime_ns))
        except OSError:
            stamps.append((str(folder), None))
    return sys.version_info[:3], __version__, tuple(sorted(stamps, key=repr))


def _entry(root: Path, key) -> Path:
    data = repr(key).encode("utf-8", "surrogatepass")
    return root / "programs" / f"{zlib.crc32(data):08x}{zlib.adler32(data):08x}.ir"


def _read(entry: Path | None, key) -> tuple | None:
    """(program, diagnostics) kept under `entry` for `key`, else None."""
    if entry is None:
        return None
    try:
        with open(entry, "rb") as f:
            stored, program, diagnostics = _decode(marshal.load(f))
    except Exception:          # absent, truncated, foreign, from another version: elaborate again
        return None
    from rasp_ir.nodes import Program
    if stored != key or not isinstance(program, Program) or not isinstance(diagnostics, list):
        return None
    return program, diagnostics


# The encoding: a node is ("n", class name, ((field, value), ...)); a tuple, list, set or
# dict is tagged likewise; atoms are themselves (numpy scalars become Python's).

def _classes() -> dict:
    import attrs

    from rasp_ir import diagnostics, nodes
    found = {}
    for module in (nodes, diagnostics):
        for name, value in vars(module).items():
            if isinstance(value, type) and attrs.has(value) and value.__module__ == \
                    module.__name__:
                found[name] = value
    return found


def _encode(x):
    if x is None or type(x) in (str, int, float, bool, bytes):
        return x
    if isinstance(x, tuple):
        return ("t", tuple(_encode(v) for v in x))
    if isinstance(x, list):
        return ("l", tuple(_encode(v) for v in x))
    if isinstance(x, frozenset):
        return ("f", tuple(_encode(v) for v in x))
    if isinstance(x, dict):
        return ("d", tuple((_encode(k), _encode(v)) for k, v in x.items()))
    import attrs
    if attrs.has(type(x)):
        # the arguments that build it again (a derived field, init=False, is derived again)
        return ("n", type(x).__name__,
                tuple((getattr(f, "alias", None) or f.name, _encode(getattr(x, f.name)))
                      for f in attrs.fields(type(x)) if f.init))
    if hasattr(x, "item"):                     # a numpy scalar
        return _encode(x.item())
    raise TypeError(f"no encoding for {type(x).__name__}")


def _decode(x, classes=None):
    if not isinstance(x, tuple):
        return x
    classes = classes if classes is not None else _classes()
    tag = x[0]
    if tag == "n":
        return classes[x[1]](**{k: _decode(v, classes) for k, v in x[2]})
    if tag == "d":
        return {_decode(k, classes): _decode(v, classes) for k, v in x[1]}
    items = [_decode(v, classes) for v in x[1]]
    return {"t": tuple, "l": list, "f": frozenset}[tag](items)


def _write(entry: Path, key, program, diagnostics: list) -> None:
    from rasp_ir.files import atomic_write_bytes
    try:
        data = marshal.dumps(_encode((key, program, list(diagnostics))))
        entry.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(entry, data)
        _prune(entry.parent)
    except Exception:          # unwritable, or a value with no encoding: only time lost
        pass


def _prune(folder: Path) -> None:
    """Keep the newest three quarters of the entries once there are more than MAX_ENTRIES."""
    entries = list(folder.glob("*.ir"))
    if len(entries) <= MAX_ENTRIES:
        return
    entries.sort(key=lambda p: p.stat().st_mtime)
    for old in entries[:len(entries) - MAX_ENTRIES * 3 // 4]:
        try:
            old.unlink()
        except OSError:
            pass
