"""Numpy helpers for per-position values of any atom type, with Python's semantics.

An s-op value is an array of shape (batch, length) whose dtype is the natural one for its
atoms (bool, int64, float64, unicode, or object for mixtures and none). Element-wise operations
without a numpy equivalent are computed once per distinct combination of input values
(`lift`), so arbitrary Python semantics stay fast: a batch has few distinct values.
"""

from __future__ import annotations

import numpy as np

NUMERIC_KINDS = "biuf"


class AtomError(Exception):
    """An element-wise operation failed on particular values at a particular place."""

    def __init__(self, error: Exception, index: tuple, args: tuple):
        super().__init__(str(error))
        self.error, self.index, self.args_ = error, index, args


def to_array(values: list) -> np.ndarray:
    """A 1-d array with the narrowest dtype that keeps every value exactly."""
    kinds = {type(v) for v in values}
    try:
        if not kinds:
            return np.zeros(0, dtype=np.int64)
        if kinds <= {bool, np.bool_}:
            return np.array(values, dtype=bool)
        if kinds <= {int, np.int64}:
            return np.array(values, dtype=np.int64)
        if kinds <= {int, float, np.int64, np.float64}:
            return np.array(values, dtype=np.float64)
        if kinds <= {str, np.str_}:
            return np.array(values, dtype=str)
    except OverflowError:
        pass
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def full(shape, value) -> np.ndarray:
    """An array of `shape` holding one atom everywhere."""
    template = to_array([value]).reshape(())
    return np.broadcast_to(template, shape)


def factorize(arr: np.ndarray) -> tuple[list, np.ndarray]:
    """(distinct values as Python atoms, integer codes of the same shape as `arr`).
    For native dtypes the distinct values are sorted, so codes preserve order."""
    if arr.dtype != object:
        uniques, codes = np.unique(arr, return_inverse=True)
        return uniques.tolist(), codes.reshape(arr.shape)
    table: dict = {}
    flat = arr.ravel()
    codes = np.fromiter((table.setdefault((type(v), v), len(table)) for v in flat),
                        dtype=np.int64, count=flat.size)
    return [key[1] for key in table], codes.reshape(arr.shape)


def lift(fn, *arrays: np.ndarray) -> np.ndarray:
    """`fn` applied element-wise (with broadcasting), once per distinct argument combination.
    Raises AtomError naming the first index where `fn` failed."""
    arrays = np.broadcast_arrays(*[np.asarray(a) for a in arrays])
    shape = arrays[0].shape
    if arrays[0].size == 0:
        return np.zeros(shape, dtype=np.int64)
    uniques, combined = [], np.zeros(shape, dtype=np.int64)
    for a in arrays:
        values, codes = factorize(a)
        uniques.append(values)
        combined = combined * len(values) + codes
    distinct, inverse = np.unique(combined, return_inverse=True)
    results = []
    for position, code in enumerate(distinct.tolist()):
        args = []
        for values in reversed(uniques):
            code, i = divmod(code, len(values))
            args.append(values[i])
        args.reverse()
        try:
            results.append(fn(*args))
        except (ArithmeticError, TypeError, ValueError, KeyError) as exc:
            where = np.argwhere(inverse.reshape(shape) == position)[0]
            raise AtomError(exc, tuple(int(i) for i in where), tuple(args)) from None
    return to_array(results)[inverse.reshape(shape)]


def compatible(a: np.ndarray, b: np.ndarray) -> bool:
    """Both numeric, or both strings: numpy's comparison matches Python's."""
    return (a.dtype.kind in NUMERIC_KINDS and b.dtype.kind in NUMERIC_KINDS) or \
        (a.dtype.kind == "U" and b.dtype.kind == "U")


def numeric(a: np.ndarray) -> bool:
    return a.dtype.kind in NUMERIC_KINDS


def where(mask: np.ndarray, value, arr: np.ndarray) -> np.ndarray:
    """`arr` with `value` (an atom) wherever `mask` holds, widening the dtype if needed."""
    if not mask.any():
        return arr
    filler = to_array([value])
    # a bool beside a number stays a bool: np.where would turn True into 1 (an aggregate of
    # booleans with default=11 printed [1, 11] where the compiled model says [true, 11])
    if filler.dtype == object or arr.dtype == object or not compatible(filler, arr) or \
            (filler.dtype == bool) != (arr.dtype == bool):
        out = arr.astype(object)
        out[mask] = value
        return out
    return np.where(mask, filler[0], arr)


def truthy(a: np.ndarray) -> np.ndarray:
    """Python truthiness of each element, as a bool array."""
    if a.dtype == bool:
        return a
    if numeric(a):
        return a != 0
    return lift(bool, a).astype(bool)


def to_python(a: np.ndarray) -> list:
    """Nested Python lists of Python atoms."""
    return a.tolist()
