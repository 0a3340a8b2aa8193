"""`normalize(x, scale)`: a LayerNorm whose per-position scale the program states (issue 21,
docs/layernorm.md): semantics, type errors, printing, the compiler's validator."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import grammar
from rasp_ir import nodes as ir
from rasp_ir.diagnostics import RaspError
from rasp_ir.interpreter import run
from rasp_ir.printer import pretty

HEAD = '''@vocab {"a", "b", "<bos>"};
@maxlen 24;
@causal;
@bos "<bos>";
@attention "softmax";
'''

COUNTS = HEAD + '''share = aggregate(s=select(k=tokens, op=False), v=tokens);
counts = normalize(share, 1 / (indices + 1));
scale = {"a": 2, "b": 0.5, "<bos>": 1}[tokens];
halved = normalize(numerical(indicator(tokens == "a")), scale);
@output counts;
'''


def parse(text):
    return grammar.parse(text, "normalize.rasp")


def words():
    return st.lists(st.sampled_from(["a", "b"]), max_size=20).map(lambda w: ["<bos>"] + w)


@settings(max_examples=50, deadline=None)
@given(words())
def test_a_share_divided_by_one_over_n_is_a_count(word):
    from rasp_ir.interpreter import Interpreter
    program = parse(COUNTS)
    ref = ir.Ref("counts")
    basis = Interpreter(program).type_of(ref).basis
    counts = np.array(run(program, [word])[0].output)          # rows over the basis
    for i in range(len(word)):
        seen = word[:i + 1]
        assert counts[i] == pytest.approx([seen.count(v) for v in basis])


def test_a_number_divided_by_a_categorical_scale():
    program = parse(COUNTS)
    out = run(program, [["<bos>", "a", "b", "a"]], ir.Ref("halved"))[0].output
    assert out == pytest.approx([0.0, 0.5, 0.0, 0.5])


def test_types():
    from rasp_ir.interpreter import Interpreter
    interp = Interpreter(parse(COUNTS))
    refs = ir.Ref("counts"), ir.Ref("halved")       # type_of caches by identity: keep them
    counts, halved = (interp.type_of(r) for r in refs)
    assert type(counts).__name__ == "Vec" and not counts.dist     # counts are not shares
    assert type(halved).__name__ == "Num"


@pytest.mark.parametrize("call, code", [
    ("normalize(share, share)", "E201"),                  # a vector is not a scale
    ("normalize(share, tokens)", "E201"),                 # nor are labels
    ("normalize(share, indices)", "E201"),                # a scale of 0 at the first position
    ("normalize(select(k=tokens, op=False), 2)", "E201"),  # a selector is not divided
])
def test_type_errors(call, code):
    with pytest.raises(RaspError) as info:
        parse(HEAD + "share = aggregate(s=select(k=tokens, op=False), v=tokens);\n"
              f"x = {call};\n@output x;\n")
    assert code in info.value.codes


def test_a_zero_scale_at_run_time_is_r231():
    program = parse(HEAD + "share = aggregate(s=select(k=tokens, op=False), v=tokens);\n"
                    "x = normalize(share, numerical(indices));\n@output x;\n")
    with pytest.raises(RaspError) as info:
        run(program, [["<bos>", "a"]])
    assert info.value.codes == ["R231"]


def test_round_trip():
    program = parse(COUNTS)
    text = pretty(program)
    assert "normalize(share, 1 / (indices + 1))" in text
    assert parse(text) == program


def test_the_validator_says_why_it_is_not_compiled():
    from compiler.validate import validate
    problems = validate(parse(COUNTS), 24)
    assert any("normalize" in p.message and "LayerNorm" in p.message for p in problems)
