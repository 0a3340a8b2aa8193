"""The one rule for when two outputs agree, for everything that compares a program with a model
or with another program: `rasp equiv`, `rasp verify`, the extraction judges and the round trip
of `rasp extract --verify`.

* numbers agree when |a - b| <= tolerance x max(1, |a|, |b|), with one default TOLERANCE;
  an infinity agrees only with itself (the bound would be infinite), NaN with nothing;
  vectors agree when every entry does;
* a prediction over tokens (logits or a softmax) is read as its decoded token: the argmax, the
  first entry on ties. Two tokens agree when they are equal;
* a next-token-set prediction is read as the set of its entries above a threshold: 1/2 for a
  sigmoid's probabilities, 0 for logits (the same set). Two sets agree when equal;
* a sequence agrees when every scored position does.

Every function works on whole batches (numpy, no loop over elements): the judges call them on
each program an extraction tries.
"""

from __future__ import annotations

import math

import numpy as np

from . import arrays as A

TOLERANCE = 1e-6          # relative to max(1, |a|, |b|): numbers and vector entries
PROBABILITY = 0.5         # a sigmoid's entry is in the set above this
LOGIT = 0.0               # ... which is its logit above this


def close(a, b, tolerance: float = TOLERANCE) -> np.ndarray:
    """Element-wise: numbers `a` and `b` agree within `tolerance` x max(1, |a|, |b|); an
    infinity agrees only with the same infinity, NaN with nothing."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    scale = np.maximum(1.0, np.maximum(np.abs(a), np.abs(b)))
    with np.errstate(invalid="ignore"):
        near = np.abs(a - b) <= tolerance * scale
    # an infinite scale would let an infinity pass for any number: equal ones pass by `==`
    return (near & np.isfinite(scale)) | (a == b)


def same_values(a: np.ndarray, b: np.ndarray, tolerance: float = TOLERANCE) -> np.ndarray:
    """Element-wise: decoded values (categorical values, numbers or tokens) agree. Numbers
    compare by `close`, anything else exactly; arrays of mixed values (object dtype) entry by
    entry with the same rule."""
    a, b = np.asarray(a), np.asarray(b)
    if A.numeric(a) and A.numeric(b):
        return close(a, b, tolerance)
    if A.compatible(a, b):
        return a == b
    same = np.frompyfunc(lambda x, y: _same_value(x, y, tolerance), 2, 1)
    return same(a.astype(object), b.astype(object)).astype(bool)


def _same_value(x, y, tolerance: float) -> bool:
    if _is_number(x) and _is_number(y):
        # `close` for one pair, without numpy's per-call cost (this runs once per element)
        scale = max(1.0, abs(x), abs(y))
        return bool(x == y or (scale < math.inf and abs(x - y) <= tolerance * scale))
    return bool(x == y)


def _is_number(x) -> bool:
    # a bool is a categorical value here, not the number 0 or 1
    return isinstance(x, (int, float, np.number)) and not isinstance(x, (bool, np.bool_))


def same_vectors(a, b, tolerance: float = TOLERANCE) -> np.ndarray:
    """Over the last axis: vectors agree when every entry does (`close`)."""
    return close(a, b, tolerance).all(-1)


def tokens(scores) -> np.ndarray:
    """The decoded token index at each position of (…, d) scores: the argmax over the last
    axis, the first entry on ties."""
    return np.asarray(scores).argmax(-1)


def token_sets(scores, threshold: float = LOGIT) -> np.ndarray:
    """The next-token set at each position as a (…, d) bool mask: the entries above
    `threshold` (LOGIT for logits, PROBABILITY for a sigmoid's output)."""
    return np.asarray(scores) > threshold


def same_tokens(a, b) -> np.ndarray:
    """Element-wise: decoded tokens agree."""
    return np.asarray(a) == np.asarray(b)


def same_sets(a, b) -> np.ndarray:
    """Over the last axis: next-token sets (bool masks) agree when they are equal."""
    return (np.asarray(a) == np.asarray(b)).all(-1)


def sequences_agree(positions: np.ndarray, scored: np.ndarray | None = None) -> np.ndarray:
    """(…,) bool from (…, n) per-position agreement: every scored position agrees (positions
    not scored count as agreeing; without `scored` every position counts)."""
    if scored is not None:
        positions = positions | ~np.asarray(scored, dtype=bool)
    return np.asarray(positions).all(-1)


def describe(kind: str, tolerance: float = TOLERANCE) -> str:
    """How outputs read as `kind` (number, vector, token, set) are compared, in words."""
    return {"number": f"numbers within {tolerance:g} x max(1, |value|)",
            "vector": f"vectors entry by entry within {tolerance:g} x max(1, |value|)",
            "token": "the decoded token (argmax) at each position",
            "set": "the set of entries above the threshold (next-token sets)"}[kind]
