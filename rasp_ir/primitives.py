"""The element-wise primitives' semantics, written once.

The interpreter evaluates `ir.Primitive` nodes with these functions, and the extractor's
primitive library (extractor/decompile/primitives.py) computes its candidates' features with
the same ones, so a candidate the least-squares fit accepts means exactly what the printed
program computes.

Every function works on rows `x` of shape (..., |basis|): one-hot for a categorical value,
real for a vector. A primitive with a categorical output (`CATEGORICAL`) returns integer codes
(...,) into `output_basis(...)`; the interpreter turns them into values, the library into
one-hot rows. The others return rows over `output_basis(...)`.

Semantics (x[v] the entry for basis value v), name(params): output basis, value:

- harden(): the basis, the value of the largest entry (the first on ties);
- sharpen(n): the basis, max(x, 0)ⁿ / Σ max(x, 0)ⁿ;
- exists(v, τ): (False, True), x[v] > τ;
- is_pure(τ): the basis and None, harden(x) where its entry is > τ, else None (for τ ≥ ½ on
  distributions: the value holding more than τ of the mass);
- balance(a, b, tol): (-1, 0, 1), 0 where |x[a] − x[b]| ≤ tol, else the sign of x[a] − x[b];
- diff(a, b, m): −m … m, floor(m·(x[a] − x[b]) + ½) clipped to ±m: the difference in steps
  of 1/m, halves rounded up;
- tally(a, b, low, high): low … high, floor(seen·(x[a] − x[b]) + ½) clipped (x[a] alone when b
  is None), where `seen` is the number of positions a causal mean at this position averages
  (its index + 1; the length without @causal): for a uniform mean of a one-hot value, how many
  more positions held a than b;
- least_above(y, first, last, τ): the candidates (the basis values from `first` to `last`, in
  basis order) and None: the first candidate after y's value (a second, categorical input)
  whose entry is > τ, scanning all candidates when y's value is not one; None when no entry
  qualifies. A head that spreads its attention over the values above the query's, read the
  way a sort reads it: the smallest value above the current one that the head sees;
- greatest_below(y, first, last, τ): the mirror image, the last candidate before y's value
  whose entry is > τ (a descending sort's step);
- erase(): (1,), 1 everywhere;
- product(y): the pairs "u,v" (u in x's basis, v in y's), x[u]·y[v]; categorical when both
  inputs are (its rows are then one-hot, and the interpreter reads the pair off them);
- lookup(M): M's columns, x · M;
- normalize(s): the basis, x / s, where s is a number per position (a second argument, not a
  parameter): a LayerNorm whose per-position scale the program states (docs/layernorm.md).
"""

from __future__ import annotations

import numpy as np


# the primitives whose output is a value of a finite basis (codes), not a vector (rows)
CATEGORICAL = frozenset({"harden", "exists", "is_pure", "balance", "diff", "tally", "erase",
                         "least_above", "greatest_below"})
# the primitives that read a second, categorical input beside x (product's is a vector)
COMPARED = frozenset({"least_above", "greatest_below"})
NAMES = CATEGORICAL | {"sharpen", "product", "lookup", "normalize"}


def product_label(first, second) -> str:
    """The basis value of the pair (first, second) in a `product`: "first,second"."""
    return f"{first},{second}"


def pure_basis(basis) -> tuple:
    """is_pure's output basis: the input basis, then None (once)."""
    return tuple(basis) if None in basis else tuple(basis) + (None,)


def output_basis(name: str, params: tuple, basis, basis_y=None) -> tuple:
    """The basis of `name`'s output for an input over `basis` (and `basis_y`, product's
    second input, or lookup's table columns)."""
    if name in ("harden", "sharpen"):
        return tuple(basis)
    if name == "exists":
        return (False, True)
    if name == "is_pure":
        return pure_basis(basis)
    if name == "balance":
        return (-1, 0, 1)
    if name == "diff":
        bins = params[2]
        return tuple(range(-bins, bins + 1))
    if name == "tally":
        low, high = params[2:4]
        return tuple(range(low, high + 1))
    if name == "erase":
        return (1,)
    if name in COMPARED:
        return candidates(basis, *params[:2]) + (None,)
    if name == "product":
        return tuple(product_label(u, v) for u in basis for v in basis_y)
    if name == "lookup":
        return tuple(basis_y)
    if name == "normalize":
        return tuple(basis)
    raise ValueError(f"unknown primitive {name}")


def _column(x: np.ndarray, basis, value) -> np.ndarray:
    return x[..., list(basis).index(value)]


def harden(x: np.ndarray) -> np.ndarray:
    """Codes into the basis: the largest entry's, the first on ties."""
    return np.argmax(x, axis=-1)


def sharpen(x: np.ndarray, power) -> np.ndarray:
    """Rows over the basis: max(x, 0)ⁿ normalised (all zeros stay zeros)."""
    powered = np.power(np.maximum(x, 0), power)
    return powered / np.maximum(powered.sum(-1, keepdims=True), 1e-300)


def exists(x: np.ndarray, basis, value, threshold) -> np.ndarray:
    """Codes into (False, True): whether x[value] is above `threshold`."""
    return (_column(x, basis, value) > threshold).astype(np.int64)


def is_pure(x: np.ndarray, basis, threshold) -> np.ndarray:
    """Codes into `pure_basis(basis)`: harden's where its entry is above `threshold`, else
    None's."""
    best = np.argmax(x, axis=-1)
    pure = np.take_along_axis(x, best[..., None], axis=-1)[..., 0] > threshold
    return np.where(pure, best, pure_basis(basis).index(None))


def balance(x: np.ndarray, basis, first, second, tolerance) -> np.ndarray:
    """Codes into (-1, 0, 1): the sign of x[first] − x[second], 0 within `tolerance`."""
    d = _column(x, basis, first) - _column(x, basis, second)
    return np.where(np.abs(d) <= tolerance, 0, np.sign(d)).astype(np.int64) + 1


def diff(x: np.ndarray, basis, first, second, bins: int) -> np.ndarray:
    """Codes into −bins … bins: x[first] − x[second] in steps of 1/bins, the nearest step
    (halves rounded up), clipped."""
    d = _column(x, basis, first) - _column(x, basis, second)
    return np.clip(np.floor(bins * d + 0.5), -bins, bins).astype(np.int64) + bins


def tally(x: np.ndarray, basis, first, second, low: int, high: int,
          seen: np.ndarray) -> np.ndarray:
    """Codes into low … high: seen · (x[first] − x[second]) (x[first] alone when `second` is
    None) to the nearest whole number (halves up), clipped; `seen` (x's shape without the
    basis axis) is how many positions the mean x averaged."""
    d = _column(x, basis, first)
    if second is not None:
        d = d - _column(x, basis, second)
    return np.clip(np.floor(seen * d + 0.5), low, high).astype(np.int64) - low


def candidates(basis, first, last) -> tuple:
    """least_above's and greatest_below's candidates: the values of `basis` from `first` to
    `last` in basis order (ValueError when either is missing or `last` comes first)."""
    basis = list(basis)
    lo, hi = basis.index(first), basis.index(last)
    if hi <= lo:
        raise ValueError(f"{last!r} does not come after {first!r} in the basis")
    return tuple(basis[lo:hi + 1])


def _ordered(x: np.ndarray, basis, y: np.ndarray, basis_y, first, last, threshold,
             above: bool) -> np.ndarray:
    """Codes into candidates + (None,): least_above (`above`) or greatest_below."""
    chosen = candidates(basis, first, last)
    lo = list(basis).index(first)
    seen = x[..., lo:lo + len(chosen)] > threshold
    # y's rank among the candidates, -1 where its value is not one (every candidate counts)
    rank = {v: i for i, v in enumerate(chosen)}
    of_y = np.array([rank.get(v, -1) for v in basis_y], dtype=np.int64)[np.argmax(y, -1)]
    at = np.arange(len(chosen))
    if above:
        allowed = at > of_y[..., None]
    else:
        allowed = (at < of_y[..., None]) | (of_y[..., None] < 0)
    hit = seen & allowed
    if above:
        code = np.argmax(hit, -1)
    else:
        code = len(chosen) - 1 - np.argmax(hit[..., ::-1], -1)
    return np.where(hit.any(-1), code, len(chosen))


def least_above(x: np.ndarray, basis, y: np.ndarray, basis_y, first, last,
                threshold) -> np.ndarray:
    """Codes into candidates + (None,): the first candidate after y's value whose entry is
    above `threshold` (y's rows one-hot over `basis_y`)."""
    return _ordered(x, basis, y, basis_y, first, last, threshold, above=True)


def greatest_below(x: np.ndarray, basis, y: np.ndarray, basis_y, first, last,
                   threshold) -> np.ndarray:
    """Codes into candidates + (None,): the last candidate before y's value whose entry is
    above `threshold`."""
    return _ordered(x, basis, y, basis_y, first, last, threshold, above=False)


def erase(x: np.ndarray) -> np.ndarray:
    """Codes into (1,): the one value everywhere."""
    return np.zeros(x.shape[:-1], dtype=np.int64)


def product(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Rows over the pairs (x's basis major): x[u]·y[v]."""
    return (x[..., :, None] * y[..., None, :]).reshape(*x.shape[:-1], -1)


def lookup(x: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Rows over the table's columns: x · table."""
    return x @ table


def normalize(x: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Rows over the basis: x divided by `scale` (x's shape without the basis axis), the
    number each position is divided by."""
    return x / scale[..., None]


def apply(name: str, params: tuple, x: np.ndarray, basis, y: np.ndarray | None = None,
          seen: np.ndarray | None = None, basis_y=None):
    """`name` on rows `x` over `basis` (and `y`: product's second rows, lookup's table, the
    compared value's one-hot rows over `basis_y`; `seen`: tally's positions averaged): codes
    into the output basis where `name` is in CATEGORICAL, rows over it otherwise."""
    if name == "harden":
        return harden(x)
    if name == "sharpen":
        return sharpen(x, *params)
    if name == "exists":
        return exists(x, basis, *params)
    if name == "is_pure":
        return is_pure(x, basis, *params)
    if name == "balance":
        return balance(x, basis, *params)
    if name == "diff":
        return diff(x, basis, *params)
    if name == "tally":
        return tally(x, basis, *params, seen=seen)
    if name == "erase":
        return erase(x)
    if name == "least_above":
        return least_above(x, basis, y, basis_y, *params)
    if name == "greatest_below":
        return greatest_below(x, basis, y, basis_y, *params)
    if name == "product":
        return product(x, y)
    if name == "lookup":
        return lookup(x, y)
    if name == "normalize":
        return normalize(x, y)
    raise ValueError(f"unknown primitive {name}")
