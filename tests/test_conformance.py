"""The RASP 0.1 conformance cases (shared/conformance/rasp01_cases.json).

Each case runs in a fresh REPL session: its `setup` statements, then its `call`. Values are
compared with the original interpreter's printed output (parsed back into Python values; floats
to 1e-3); error cases must raise RaspError with the code that corresponds to RASP 0.1's message.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

from grammar import Session
from grammar.values import Term
from rasp_ir import types as T
from rasp_ir.diagnostics import CODES, RaspError

SHARED = Path(__file__).resolve().parent.parent.parent / "shared"
CASES_FILE = SHARED / "conformance" / "rasp01_cases.json"
CASES = json.loads(CASES_FILE.read_text(encoding="utf-8"))["cases"]
BY_ID = {c["id"]: c for c in CASES}

# RASP 0.1 error message -> our diagnostic code
ERROR_CODES = {
    "E01": "E250",   # Undefined variable
    "E02": "E201",   # unsupported operand type(s) for +: 'int' and 'str'
    "E03": "E240",   # selector_width(tokens, tokens, ==): wrong number of arguments
    "E04": "E251",   # Cannot set reserved name
    "E05": "E202",   # and/or between selector and non-selector
    "E06": "E214",   # + on a selector
    "E07": "E224",   # selector_width of an s-op (reported at the call site)
    "E08": "E220",   # Expected selector
    "E09": "E204",   # indicator of an atom
    "E10": "E206",   # key not in dict
    "E11": "E207",   # index into a sequence is not an integer
    "E12": "E240",   # wrong number of args
    "E13": "R231",   # division by zero
    "E15": "R234",   # mixed-type input
}

# cases that succeed in the new language although RASP 0.1 rejected them
SUCCEEDS = {
    "E14": [True, True, False, False, True],   # != outside select
    "Q08": 2,                                  # round is half-to-even
    "Q09": "selector",                         # `select (` with a space is an ordinary call
    "Q10": 0.5,                                # a float with a leading dot
}

RASP01_PRECEDENCE = {f"Q0{i}" for i in range(1, 8)}

TOLERANCE = 1e-3


# ---------------------------------------------------------------- oracle notation

def _atom(text: str, kind: str | None):
    if kind == "strings":
        return text
    if kind == "bools" or text in ("T", "F", "True", "False"):
        return {"T": True, "F": False, "True": True, "False": False}[text]
    if kind == "ints":
        return int(text)
    if kind == "floats":
        return float(text)
    try:
        return int(text)
    except ValueError:
        return float(text)


def parse_oracle(text: str):
    """`[x]*n (ints)`, `[a, b] (strings)`, `[T, F] (bools)`, `2`, `False` -> (value, kind)."""
    m = re.fullmatch(r"(.*?)\s*\((ints|floats|strings|bools)\)", text.strip())
    if m is None:
        return _atom(text.strip(), None), None
    body, kind = m.groups()
    repeated = re.fullmatch(r"\[(.*)\]\*(\d+)", body)
    if repeated:
        return [_atom(repeated.group(1), kind)] * int(repeated.group(2)), kind
    assert body.startswith("[") and body.endswith("]"), text
    return [_atom(x, kind) for x in body[1:-1].split(", ")], kind


def test_parse_oracle():
    assert parse_oracle("[5]*5 (ints)") == ([5] * 5, "ints")
    assert parse_oracle("[0.333]*3 (floats)") == ([0.333] * 3, "floats")
    assert parse_oracle("[F, T, F] (bools)") == ([False, True, False], "bools")
    assert parse_oracle("[n, ,, k] (strings)") == (["n", ",", "k"], "strings")
    assert parse_oracle("False") == (False, None)
    assert parse_oracle("2") == (2, None)


def same(actual, expected, kind=None) -> bool:
    """Equal values of the expected kind; floats to TOLERANCE."""
    if isinstance(expected, list):
        return isinstance(actual, list) and len(actual) == len(expected) and \
            all(same(a, e, kind) for a, e in zip(actual, expected))
    if isinstance(expected, bool) or kind == "bools":
        return isinstance(actual, bool) and actual == expected
    if kind == "strings" or isinstance(expected, str):
        return isinstance(actual, str) and actual == expected
    if isinstance(actual, bool) or not isinstance(actual, (int, float)):
        return False
    if kind == "ints" or (kind is None and isinstance(expected, int)):
        return isinstance(actual, int) and actual == expected
    return math.isclose(actual, expected, abs_tol=TOLERANCE)


# ---------------------------------------------------------------- running a case

def _statements(case) -> list[str]:
    """Setup lines that are statements (REPL commands like `set example …` carry no meaning)."""
    return [line for line in case["setup"] if line.rstrip().endswith((";", "}"))]


def run_case(case):
    """The value of the case's call in a fresh session (RaspError propagates)."""
    session = Session()
    try:
        for line in _statements(case):
            session.run(line)
        values = session.run(case["call"])
    except RaspError:
        raise
    except Exception as exc:  # noqa: BLE001 - anything but RaspError is a bug
        pytest.fail(f"{case['id']} raised {type(exc).__name__} instead of RaspError: {exc}")
    assert len(values) == 1, values
    return values[0]


def _params(categories):
    out = []
    for case in CASES:
        if case["category"] not in categories:
            continue
        marks = ()
        if case["id"] in RASP01_PRECEDENCE:
            marks = pytest.mark.skip(reason="RASP 0.1 operator precedence: the default "
                                            "language uses Python precedence on purpose; these "
                                            "cases run under @compat \"rasp0.1\" in "
                                            "tests/test_compat.py")
        out.append(pytest.param(case, id=case["id"], marks=marks))
    return out


@pytest.mark.parametrize("case", _params({"core", "select", "task"}))
def test_value_case(case):
    expected, kind = parse_oracle(case["oracle_output"])
    actual = run_case(case)
    assert same(actual, expected, kind), f"{case['call']}: got {actual!r}, expected {expected!r}"


@pytest.mark.parametrize("case", _params({"error"}))
def test_error_case(case):
    if case["id"] in SUCCEEDS:
        actual = run_case(case)
        assert same(actual, SUCCEEDS[case["id"]]), actual
        return
    code = ERROR_CODES[case["id"]]
    with pytest.raises(RaspError) as info:
        run_case(case)
    assert code in info.value.codes, (
        f"{case['call']}: expected {code}, got {info.value.codes}\n{info.value}")


@pytest.mark.parametrize("case", _params({"quirk"}))
def test_quirk_case(case):
    expected = SUCCEEDS.get(case["id"])
    assert expected is not None, f"no expectation for {case['id']}"
    actual = run_case(case)
    if expected == "selector":
        assert isinstance(actual, Term) and isinstance(actual.type, T.Sel), actual
    else:
        assert same(actual, expected), actual


def test_every_case_is_covered():
    categories = {c["category"] for c in CASES}
    assert categories == {"core", "select", "task", "error", "quirk"}
    for case in CASES:
        if case["category"] == "error":
            assert case["id"] in ERROR_CODES or case["id"] in SUCCEEDS, case["id"]
        if case["category"] == "quirk":
            assert case["id"] in RASP01_PRECEDENCE or case["id"] in SUCCEEDS, case["id"]


def test_error_codes_are_known():
    for code in ERROR_CODES.values():
        assert code in CODES, code
