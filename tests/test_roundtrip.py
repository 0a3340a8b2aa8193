"""Round trip of the printer and the front end on generated well-typed IR programs:
`parse(pretty(p)) == p`, `pretty` is a fixed point after one round, and the interpreter gives
the same outputs (or the same coded error) on the program and on its reparsed text."""

import math

import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

import grammar
from rasp_ir import types as T
from rasp_ir.diagnostics import CODES, RaspError
from rasp_ir.interpreter import run
from rasp_ir.printer import pretty

from strategies import inputs_for, programs

_SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                       HealthCheck.data_too_large])


def check_round_trip(program):
    text = pretty(program)
    note(text)
    again = grammar.parse(text, "roundtrip.rasp")
    assert again == program
    assert pretty(again) == text
    return again


@settings(max_examples=500, **_SETTINGS)
@given(programs())
def test_parse_inverts_pretty(program):
    check_round_trip(program)


def _outcome(program, inputs):
    """The outputs per input, or the codes of the RaspError the run raised."""
    try:
        return [(r.output, r.logits) for r in run(program, inputs)]
    except RaspError as exc:
        assert exc.codes and all(c in CODES for c in exc.codes), exc.codes
        return ("error", tuple(exc.codes))


def _same(a, b) -> bool:
    """Structural equality where NaN equals NaN."""
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(map(_same, a, b))
    return type(a) is type(b) and a == b


@settings(max_examples=150, **_SETTINGS)
@given(programs(), st.data())
def test_interpreter_agrees_on_reparsed_program(program, data):
    again = check_round_trip(program)
    inputs = data.draw(inputs_for(program), label="inputs")
    assert _same(_outcome(program, inputs), _outcome(again, inputs))


@settings(max_examples=100, **_SETTINGS)
@given(programs(drasp=True))
def test_drasp_programs_round_trip(program):
    check_round_trip(program)
    assert T.output_type(program) is not None


@pytest.mark.slow
@settings(max_examples=5000, **_SETTINGS)
@given(programs(), st.data())
def test_round_trip_thorough(program, data):
    again = check_round_trip(program)
    inputs = data.draw(inputs_for(program), label="inputs")
    assert _same(_outcome(program, inputs), _outcome(again, inputs))
