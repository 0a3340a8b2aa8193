"""Numeric ops: a select's or project's `op=` that gives numbers is a table of real scores (or
logits) used as written; a truth value is lifted by @hard_scale. The interpreter, the
printer and the compiler agree on it."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import grammar
from compiler.compile import compile_program
from rasp_ir import types as T
from rasp_ir.interpreter import Interpreter, run
from rasp_ir.printer import pretty

HEAD = '''@vocab {"a", "b", "<bos>"};
@maxlen 6;
@causal;
@bos "<bos>";
@attention "softmax";
'''

PROGRAM = HEAD + '''s = select(k=indices, op=(0.5 * k)) + select(k=tokens, q=tokens, op=((k == q) * 2 - 1));
x = aggregate(s, tokens);
l = project(inp=indices, op=((out == "a") * (0.3 * inp - 1))) + project(inp=x, op=(inp == out))
    + project(op=(-2 if out == "b" else 0.25));
@output l;
'''


def parse(text):
    return grammar.parse(text, "numeric.rasp")


@pytest.mark.parametrize("op, numeric", [
    ("(0.5 * k)", True), ("((k == 0) * 3)", True), ("(-k)", True),
    ("(k == 0)", False), ("(k < q - 1)", False), ("False", False), ("(k % 2 == 0)", False),
])
def test_numeric_op_is_decided_by_the_form(op, numeric):
    program = parse(HEAD + f"s = select(k=indices, q=indices, op={op});\n"
                    "x = aggregate(s, tokens);\n@output x;\n")
    select = program.bindings[0].value
    assert T.numeric_op(select.predicate) is numeric
    # a numeric op is a score even between two s-ops; a predicate between s-ops a selector
    assert isinstance(Interpreter(program).type_of(select), T.Score if numeric else T.Sel)


def test_scores_are_the_values_as_written():
    program = parse(HEAD + "s = select(k=indices, op=(0.5 * k));\nx = aggregate(s, numerical(indices));\n"
                    "@output x;\n")
    # a softmax over 0, 0.5, 1.0: the mean position under those weights, not hard attention
    (result,) = run(program, [["<bos>", "a", "b"]])
    w = np.exp([0.0, 0.5, 1.0])
    assert result.output[2] == pytest.approx(float(np.dot(w / w.sum(), [0, 1, 2])))


def test_logits_are_the_values_as_written():
    program = parse(PROGRAM)
    (result,) = run(program, [["<bos>"]])
    # at the BOS: the bias (0.25 / -2 / 0.25), position 0's (out == "a") * (0.3*0 - 1) = -1,
    # and the aggregate's one-hot BOS vote lifted by @hard_scale
    assert result.logits[0] == pytest.approx([0.25 - 1, -2, 0.25 + 1e4])


def test_round_trip_and_compiler_agree():
    program = parse(PROGRAM)
    assert parse(pretty(program)) == program
    model = compile_program(program)
    inputs = [["<bos>", "a", "b", "a"], ["<bos>", "b", "b"], ["<bos>"]]
    assert model.run(inputs) == [r.output for r in run(program, inputs)]


@settings(max_examples=25, deadline=None)
@given(st.floats(-3, 3, allow_nan=False).map(lambda f: round(f, 1)),
       st.floats(-3, 3, allow_nan=False).map(lambda f: round(f, 1)))
def test_linear_position_scores_compile_exactly(slope, offset):
    program = parse(HEAD + f"s = select(k=indices, q=indices, op=({slope} * k - q + {offset}));\n"
                    "x = aggregate(s, tokens);\n@output x;\n")
    model = compile_program(program)
    inputs = [["<bos>", "a", "b", "a", "b"], ["<bos>", "b", "a"]]
    assert model.run(inputs) == [r.output for r in run(program, inputs)]
