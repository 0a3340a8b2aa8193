"""rasp-ir: RASP programs and transformers as two views of one typed IR.

The Python API (`rasp_ir.load`, `rasp_ir.run`, `rasp_ir.compile`, `rasp_ir.extract`,
`rasp_ir.equiv`, …) is defined in rasp_ir/api.py and read from there on first use, so that
`import rasp_ir` stays light: the grammar, the compiler and torch load only when called.
"""

from __future__ import annotations

__version__ = "0.1.0"           # the one place the version is written (pyproject reads it)


def version() -> str:
    """The version of rasp-ir (`rasp --version`)."""
    return __version__


_API = ("load", "parse", "run", "compile", "extract", "equivalent", "verify")
__all__ = ["version", *_API]


def __getattr__(name: str):
    """`rasp_ir.load`, `rasp_ir.run`, …: the functions of rasp_ir/api.py, imported on first
    use (the API imports the grammar and the compiler; the ground floor does not)."""
    if name in _API:
        from . import api
        return getattr(api, name)
    raise AttributeError(f"module 'rasp_ir' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))
