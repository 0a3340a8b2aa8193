"""The meaning of element-wise operations on single atoms (Python semantics, as RASP 0.1).

Value-set inference and the interpreter both call these, so a map's inferred value set and its
computed values cannot disagree.
"""

from __future__ import annotations

import operator

ARITHMETIC = {"+", "-", "*", "/", "%", "^"}
COMPARISONS = {"==", "!=", "<", "<=", ">", ">="}
LOGICAL = {"and", "or"}

COMPARE = {
    "==": operator.eq, "!=": operator.ne, "<": operator.lt,
    "<=": operator.le, ">": operator.gt, ">=": operator.ge,
}
FLIPPED = {"==": "==", "!=": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}


MAX_POWER_BITS = 1 << 16


def _power(a, b):
    if isinstance(a, int) and isinstance(b, int) and b > 0 and \
            b * (abs(a).bit_length() - 1) > MAX_POWER_BITS:
        raise OverflowError(f"{a} ^ {b} is too large")     # Python would grind for minutes
    result = a ** b
    if isinstance(result, complex):
        raise ValueError("a negative number raised to a fractional power")
    return result


_BINARY = {
    "+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv,
    "%": operator.mod, "^": _power,
    "and": lambda a, b: bool(a) and bool(b), "or": lambda a, b: bool(a) or bool(b),
    **COMPARE,
}


def binary(op: str, a, b):
    """`a op b` on atoms. Raises ZeroDivisionError, TypeError or ValueError like Python."""
    if a is None or b is None:
        if op in ("==", "!="):
            return (a is b) == (op == "==")
        raise TypeError(f"cannot apply {op} to none")
    return _BINARY[op](a, b)


def unary(op: str, a):
    """`op a` on an atom."""
    if op == "not":
        return not a
    if a is None or isinstance(a, str):
        raise TypeError(f"cannot apply unary {op} to {a!r}")
    return -a if op == "-" else +a


def compare(op: str, key, query):
    """A select predicate: `key op query` (RASP 0.1 order)."""
    return binary(op, key, query)


def rasp_round(x):
    """Python's round (half to even), as RASP 0.1; an int result."""
    if isinstance(x, str) or x is None:
        raise TypeError(f"round expects a number, got {x!r}")
    return int(round(x))


def indicator(x):
    """1 where the value is true, else 0."""
    return 1 if x else 0


def call(function: str, *args):
    """An element-wise builtin on atoms."""
    x = args[0]
    if function == "indicator":
        return indicator(x)
    if function == "round":
        return rasp_round(x)
    if function in ("numerical", "categorical"):
        return x
    if function == "abs":
        return abs(x)
    if function == "str":
        return str(x)
    if function == "int":
        return int(x)
    if function == "float":
        return float(x)
    if function == "bool":
        return bool(x)
    raise KeyError(function)


ELEMENTWISE_CALLS = ("indicator", "round", "numerical", "categorical", "abs", "str", "int",
                     "float", "bool")


def sort_key(value):
    """A total order over mixed atoms (for printing value sets and bases deterministically)."""
    if value is None:
        return (0, 0, "")
    if isinstance(value, bool):
        return (1, int(value), "")
    if isinstance(value, (int, float)):
        return (2, value, "")
    return (3, 0, str(value))


def sorted_values(values) -> tuple:
    """`values` in the deterministic order of `sort_key`."""
    return tuple(sorted(values, key=sort_key))
