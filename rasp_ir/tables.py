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

_LABELS = "rasp_ir.labels"


def side_file(program_path: Path) -> Path:
    """Where the tables of the program at `program_path` live."""
    return program_path.with_suffix(".tables.safetensors")


def read_tables(path: Path) -> dict[str, ir.Matrix]:
    """Every table of a side-file, as named Matrix nodes."""
    from safetensors import safe_open
    out = {}
    with safe_open(str(path), framework="numpy") as f:
        labels = json.loads((f.metadata() or {}).get(_LABELS, "{}"))
        for name in f.keys():
            values = f.get_tensor(name).astype(np.float64)
            info = labels.get(name, {})
            rows = tuple(info.get("rows", range(values.shape[0])))
            if values.ndim == 1:
                out[name] = ir.Matrix(rows, None, tuple(values.tolist()), name=name)
            else:
                cols = tuple(info.get("cols", range(values.shape[1])))
                out[name] = ir.Matrix(rows, cols, tuple(map(tuple, values.tolist())), name=name)
    return out


def write_tables(path: Path, tables: dict[str, ir.Matrix]) -> None:
    """Write named tables atomically (a temporary file renamed over the target)."""
    from safetensors.numpy import save
    arrays = {name: np.asarray(m.values, dtype=np.float64) for name, m in tables.items()}
    labels = {name: {"rows": list(m.rows), **({"cols": list(m.cols)} if m.cols else {})}
              for name, m in tables.items()}
    data = save(arrays, metadata={_LABELS: json.dumps(labels)})
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
