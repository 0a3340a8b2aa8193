"""Tables in a safetensors side-file next to a program (`prog.rasp` -> `prog.tables.safetensors`).

Each table is one float32/float64 tensor; its row and column labels (token names, basis
values) are kept as JSON in the file's metadata, so a table stays readable on its own.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from . import nodes as ir
from .files import atomic_write_bytes, atomic_write_text
from .jsondata import decoded

_LABELS = "rasp_ir.labels"


def side_file(program_path: Path) -> Path:
    """Where the tables of the program at `program_path` live."""
    return program_path.with_suffix(".tables.safetensors")


def read_tables(path: Path) -> dict[str, ir.Matrix]:
    """Every table of a side-file, as named Matrix nodes. Raises RaspError E254 naming the file
    and the table when the file is not a side-file rasp-ir can use (truncated or not
    safetensors, labels that are not JSON or do not fit the tensor's shape, a tensor of more
    than two dimensions or past limits.MAX_TABLE_ENTRIES, NaN or infinite entries)."""
    from safetensors import safe_open

    from .diagnostics import Diagnostic, RaspError
    from .limits import MAX_TABLE_ENTRIES

    def bad(message: str) -> RaspError:
        return RaspError([Diagnostic("E254", f"side-file {path}: {message}")])

    out = {}
    try:
        with safe_open(str(path), framework="numpy") as f:
            try:
                labels = decoded(json.loads((f.metadata() or {}).get(_LABELS, "{}")))
            except json.JSONDecodeError as exc:
                raise bad(f"its labels are not JSON ({exc.msg})") from None
            if not isinstance(labels, dict):
                raise bad("its labels are not a JSON object")
            for name in f.keys():
                shape = tuple(f.get_slice(name).get_shape())
                if len(shape) not in (1, 2) or 0 in shape:
                    raise bad(f"table {name!r} has shape {list(shape)}; a table is a non-empty "
                              "vector or matrix")
                if int(np.prod(shape)) > MAX_TABLE_ENTRIES:
                    raise bad(f"table {name!r} has {int(np.prod(shape)):,} entries; the limit "
                              f"is {MAX_TABLE_ENTRIES:,} (rasp_ir/limits.py)")
                values = f.get_tensor(name)
                if values.dtype.kind not in "fiub":
                    raise bad(f"table {name!r} holds {values.dtype} values, not numbers")
                values = values.astype(np.float64)
                if not np.isfinite(values).all():
                    raise bad(f"table {name!r} holds NaN or infinite entries")
                out[name] = _matrix(name, values, labels.get(name, {}), bad)
    except RaspError:
        raise
    except Exception as exc:        # safetensors' own errors: truncated, not safetensors, …
        raise bad(f"unreadable ({type(exc).__name__}: {exc})") from None
    return out


def _matrix(name: str, values: np.ndarray, info, bad) -> ir.Matrix:
    """A table's Matrix node, its labels checked against its shape."""
    if not isinstance(info, dict):
        raise bad(f"the labels of table {name!r} are not a JSON object")

    def axis(key: str, size: int) -> tuple:
        found = info.get(key, list(range(size)))
        if not isinstance(found, list) or len(found) != size or \
                not all(v is None or isinstance(v, (str, int, float, bool)) for v in found):
            raise bad(f"table {name!r}: '{key}' must list {size} labels (strings or numbers)")
        return tuple(found)
    rows = axis("rows", values.shape[0])
    if values.ndim == 1:
        return ir.Matrix(rows, None, tuple(values.tolist()), name=name)
    cols = axis("cols", values.shape[1])
    return ir.Matrix(rows, cols, tuple(map(tuple, values.tolist())), name=name)


def write_tables(path: Path, tables: dict[str, ir.Matrix]) -> None:
    """Write named tables atomically (a temporary file renamed over the target)."""
    from safetensors.numpy import save
    arrays = {name: np.asarray(m.values, dtype=np.float64) for name, m in tables.items()}
    labels = {name: {"rows": list(m.rows), **({"cols": list(m.cols)} if m.cols else {})}
              for name, m in tables.items()}
    from .jsondata import dumps
    data = save(arrays, metadata={_LABELS: dumps(labels)})   # a 1e999 label: standard JSON
    atomic_write_bytes(path, data)


def write_program(program: ir.Program, path: Path) -> list[Path]:
    """Save a program as canonical text, with its named tables in the side-file beside it.
    The side-file is written first, so a reader never sees text naming missing tables.
    The files written: the side-file (only when the program has named tables), the text."""
    from .printer import named_tables, pretty
    path = Path(path)
    tables = named_tables(program)
    written = []
    if tables:
        write_tables(side_file(path), tables)
        written.append(side_file(path))
    atomic_write_text(path, pretty(program))
    return written + [path]
