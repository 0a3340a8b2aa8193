"""rasp_ir.ops on whole arrays of atoms, with exactly Python's results.

The compiler tabulates element-wise functions over every combination of their inputs' values
(compiler/functions.py). Here each operation runs on arrays at once: through numpy where numpy
gives Python's result (the interpreter's rule, `fast_binary`, plus bounds that keep integers
exact), otherwise through rasp_ir.ops once per distinct combination of argument values.

A *column* is `(values, undefined)`: `values` an array of atoms whose dtype gives back the exact
Python types (bool, int64 -> int, float64 -> float, unicode -> str; object for anything else,
so ints and floats are never merged into one float dtype), and `undefined` a bool array, or None
for nowhere, marking where the operation raises (the per-atom path's `Undefined`). Values under
`undefined` are placeholders of the right dtype. Arrays broadcast against each other: a column
that reads one input of a grid keeps the size of that input.
"""

from __future__ import annotations

import math

import numpy as np

from rasp_ir import ops
from rasp_ir.interpreter import fast_binary

# the per-atom path turns these into Undefined (functions._guard)
ERRORS = (ArithmeticError, TypeError, ValueError, KeyError, OverflowError)
EXACT_FLOAT_INT = 1 << 53     # ints up to here convert to float64 exactly
SAFE_INT = 1 << 62            # sums and differences of ints below this stay in int64


def atoms(values) -> np.ndarray:
    """A 1-d array of `values` in a dtype that gives each one back with its own type."""
    values = list(values)
    kinds = {type(v) for v in values}
    try:
        if kinds == {bool}:
            return np.array(values, dtype=bool)
        if kinds == {int}:
            return np.array(values, dtype=np.int64)
        if kinds == {float}:
            return np.array(values, dtype=np.float64)
        if kinds == {str} and not any(v.endswith("\0") for v in values):  # numpy drops those
            return np.array(values, dtype=str)
    except OverflowError:
        pass
    out = np.empty(len(values), dtype=object)
    for i, v in enumerate(values):      # element by element: an atom is never unpacked
        out[i] = v
    return out


def from_results(results: list, failed: list, shape) -> tuple:
    """The column of per-atom `results` (in C order of `shape`); `failed` marks the ones that
    raised, whose places get a placeholder of the others' type."""
    undefined = None
    if any(failed):
        filler = next((r for r, bad in zip(results, failed) if not bad), 0)
        results = [filler if bad else r for r, bad in zip(results, failed)]
        undefined = np.array(failed, dtype=bool).reshape(shape)
    return atoms(results).reshape(shape), undefined


def constant(value) -> tuple:
    return atoms([value]).reshape(()), None


def union(*masks):
    """The union of undefined masks (None: nowhere)."""
    masks = [m for m in masks if m is not None]
    if not masks:
        return None
    out = masks[0]
    for m in masks[1:]:
        out = out | m
    return out


def factorize(arr: np.ndarray) -> tuple[list, np.ndarray]:
    """(distinct atoms, codes of `arr`'s shape). Distinct means distinct to Python: -0.0 and
    0.0 stay apart (str() tells them apart), as do values of different types."""
    if arr.dtype == np.float64:
        bits, codes = np.unique(arr.view(np.int64), return_inverse=True)
        return bits.view(np.float64).tolist(), codes.reshape(arr.shape)
    if arr.dtype != object:
        uniques, codes = np.unique(arr, return_inverse=True)
        return uniques.tolist(), codes.reshape(arr.shape)
    table: dict = {}
    firsts: list = []
    flat = arr.ravel().tolist()
    codes = np.empty(len(flat), dtype=np.int64)
    for i, v in enumerate(flat):
        key = (float, v, math.copysign(1.0, v)) if type(v) is float else (type(v), v)
        code = table.get(key)
        if code is None:
            code = table[key] = len(firsts)
            firsts.append(v)
        codes[i] = code
    return firsts, codes.reshape(arr.shape)


def lift(fn, *columns) -> tuple:
    """`fn` on atoms, applied once per distinct combination of arguments; where it raises one
    of ERRORS the result is undefined."""
    undefined = union(*(c[1] for c in columns))
    combined = np.zeros((), dtype=np.int64)
    uniques = []
    for values, _ in columns:
        distinct, codes = factorize(values)
        uniques.append(distinct)
        combined = combined * len(distinct) + codes
    if combined.size == 0:
        return np.zeros(combined.shape, dtype=np.int64), undefined
    distinct, inverse = np.unique(combined, return_inverse=True)
    inverse = inverse.reshape(combined.shape)
    results, failed = [], []
    for code in distinct.tolist():
        args = []
        for values in reversed(uniques):
            code, i = divmod(code, len(values))
            args.append(values[i])
        try:
            results.append(fn(*reversed(args)))
            failed.append(False)
        except ERRORS:
            results.append(None)
            failed.append(True)
    values, failures = from_results(results, failed, len(results))
    flat = inverse.ravel()          # a 0-d index would give back a bare atom, not an array
    if failures is not None:
        undefined = union(undefined, failures[flat].reshape(inverse.shape))
    return values[flat].reshape(inverse.shape), undefined


def _bound(arr: np.ndarray) -> int:
    """The largest magnitude of an integer array (0 for other dtypes or no elements)."""
    if arr.dtype != np.int64 or arr.size == 0:
        return 0
    return max(abs(int(arr.min())), abs(int(arr.max())))


def _numpy_exact(op: str, a: np.ndarray, b: np.ndarray) -> bool:
    """Whether int64 arithmetic and int -> float conversion lose nothing for these operands."""
    ints = [x for x in (a, b) if x.dtype == np.int64]
    if not ints:
        return True
    bounds = [_bound(x) for x in ints]
    mixed = any(x.dtype == np.float64 for x in (a, b))
    if mixed or op == "/":
        return max(bounds) <= EXACT_FLOAT_INT
    if op == "*":
        return math.prod(bounds) < SAFE_INT
    return max(bounds) < SAFE_INT


def binary(op: str, a: tuple, b: tuple) -> tuple:
    """`a op b` (rasp_ir.ops.binary) on two columns."""
    x, y = a[0], b[0]
    if op in ("and", "or") or _numpy_exact(op, x, y):
        with np.errstate(all="ignore"):
            fast = fast_binary(op, x, y)
        if fast is not None:
            return np.asarray(fast), union(a[1], b[1])
    return lift(lambda p, q: ops.binary(op, p, q), a, b)


def unary(op: str, a: tuple) -> tuple:
    """`op a` (rasp_ir.ops.unary) on a column."""
    x, undefined = a
    if op == "not" and x.dtype.kind in "bif":
        return np.asarray(~truthy(x)), undefined
    if op in "-+" and x.dtype.kind in "bif" and _bound(x) < SAFE_INT:
        if x.dtype == bool:
            x = x.astype(np.int64)        # -True is -1
        return np.asarray(-x if op == "-" else x), undefined
    return lift(lambda p: ops.unary(op, p), a)


def truthy(x: np.ndarray) -> np.ndarray:
    """Python's bool() of each atom."""
    if x.dtype == bool:
        return x
    if x.dtype.kind in "if":
        return np.asarray(x != 0)        # NaN is true, as in Python
    return lift(bool, (x, None))[0].astype(bool)


def cond(c: tuple, then: tuple, otherwise: tuple) -> tuple:
    """`then if c else otherwise`; only the branch taken can be undefined."""
    pick = truthy(c[0])
    t, o = then[0], otherwise[0]
    if t.dtype != o.dtype and not (t.dtype.kind == o.dtype.kind == "U"):
        t, o = t.astype(object), o.astype(object)     # keep 1 and 0.5 an int and a float
    values = np.asarray(np.where(pick, t, o))
    branches = None
    if then[1] is not None or otherwise[1] is not None:
        branches = np.where(pick, _mask(then[1]), _mask(otherwise[1]))
    return values, union(c[1], branches)


def _mask(undefined):
    return False if undefined is None else undefined


def member(a: tuple, options: tuple, negate: bool) -> tuple:
    """`(a in options) != negate`."""
    x, undefined = a
    if not options:
        return np.full(x.shape, negate), undefined
    choices = atoms(options)
    numbers = x.dtype.kind in "bif" and choices.dtype.kind in "bif" and max(
        _bound(x), _bound(choices)) <= EXACT_FLOAT_INT and not (
        choices.dtype == np.float64 and np.isnan(choices).any())
    if numbers or x.dtype.kind == choices.dtype.kind == "U":
        return np.asarray(np.isin(x, choices) != negate), undefined
    return lift(lambda p: is_member(p, options) != negate, a)


def is_member(value, options: tuple) -> bool:
    """`value in options` by equality alone, as the interpreter's numpy membership decides:
    Python's `in` also tests identity, which makes one NaN object a member of a tuple holding
    that same object."""
    return any(value == option for option in options)


def lookup(a: tuple, table: dict) -> tuple:
    return lift(lambda p: table[p], a)


def call(function: str, a: tuple) -> tuple:
    """An element-wise builtin (rasp_ir.ops.call) on a column."""
    x, undefined = a
    if function in ("numerical", "categorical"):
        return a
    if function == "indicator" and x.dtype.kind in "bif":
        return np.asarray(truthy(x).astype(np.int64)), undefined
    if function in ("round", "abs") and x.dtype.kind in "bi" and _bound(x) < SAFE_INT:
        x = x.astype(np.int64)
        return np.asarray(np.abs(x) if function == "abs" else x), undefined
    if function == "abs" and x.dtype == np.float64:
        return np.asarray(np.abs(x)), undefined
    if function == "round" and x.dtype == np.float64 and x.size and np.isfinite(x).all() \
            and np.abs(x).max() < SAFE_INT:
        return np.asarray(np.rint(x).astype(np.int64)), undefined      # half to even, as Python
    return lift(lambda p: ops.call(function, p), a)


def same(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """`same_atom` on arrays of one dtype each: floats within 1e-9 relative, anything
    else equal and of the same type."""
    if a.dtype == b.dtype == np.float64:
        with np.errstate(all="ignore"):
            scale = np.maximum(1.0, np.maximum(np.abs(a), np.abs(b)))
            return np.abs(a - b) <= 1e-9 * scale
    if a.dtype == b.dtype and a.dtype != object:
        return a == b
    a, b = np.broadcast_arrays(a.astype(object), b.astype(object))
    out = [same_atom(p, q) for p, q in zip(a.ravel().tolist(), b.ravel().tolist())]
    return np.array(out, dtype=bool).reshape(a.shape)


def same_atom(a, b) -> bool:
    """Two results the compiler may treat as one: floats within 1e-9 relative, anything else
    equal and of the same type."""
    if isinstance(a, float) or isinstance(b, float):
        try:
            return abs(a - b) <= 1e-9 * max(1.0, abs(a), abs(b))
        except TypeError:
            return False
    return a == b and type(a) is type(b)
