"""Running a program's `@expect` lines: every .rasp file is its own test."""

from __future__ import annotations

import math

from . import nodes as ir
from .diagnostics import Diagnostic, RaspError
from .interpreter import run

TOLERANCE = 1e-3   # RASP 0.1 prints floats to 3 places; expectations are written that way


def same(a, b) -> bool:
    """Values equal, floats to TOLERANCE, element-wise through lists."""
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, bool) or isinstance(b, bool):
        return a == b and type(a) is type(b) or (a == b and not isinstance(a, float))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(a, b, abs_tol=TOLERANCE)
    return a == b


def check_expects(program: ir.Program) -> list[Diagnostic]:
    """One E271 diagnostic per failing @expect (runtime errors are reported as they are)."""
    problems = []
    for e in program.expects:
        try:
            (result,) = run(program, [list(e.input)], node=e.subject)
        except RaspError as exc:
            problems.extend(attrs_with_span(d, e.span) for d in exc.diagnostics)
            continue
        if not same(result.output, list(e.expected)):
            problems.append(Diagnostic("E271", "expectation does not hold", e.span,
                                       note=f"expected {list(e.expected)!r}, "
                                            f"got {result.output!r}"))
    return problems


def attrs_with_span(d: Diagnostic, span) -> Diagnostic:
    import attrs
    return d if d.span is not None else attrs.evolve(d, span=span)
