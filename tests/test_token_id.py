"""token_id(x): @vocab numbered in its order, a named lookup that prints as its call."""

import pytest
from hypothesis import given, settings, strategies as st

import grammar
from rasp_ir import nodes as ir
from rasp_ir.diagnostics import RaspError
from rasp_ir.interpreter import run as run_all
from rasp_ir.printer import pretty

HEAD = '''@vocab {"0", "1", "2", "3", "<bos>", "<eos>"};
@maxlen 8;
@causal;
@bos "<bos>";
@attention "softmax";
'''
VOCAB = ("0", "1", "2", "3", "<bos>", "<eos>")


def run(p, seq):
    return list(run_all(p, [seq])[0].output)


def program(body: str):
    return grammar.parse(HEAD + body)


def test_values_are_positions_in_vocab():
    p = program("ids = token_id(tokens);\n@output ids;")
    assert run(p, ["<bos>", "3", "0", "<eos>"]) == [4, 3, 0, 5]


def test_prints_as_its_call_and_parses_back():
    p = program("logits = project(inp=tokens, op=(token_id(out) == token_id(inp) + 1));\n"
                "prediction = softmax(logits);\n@output prediction;")
    text = pretty(p)
    assert "token_id(out) == token_id(inp) + 1" in text
    assert grammar.parse(text) == p
    lookups = [n for b in p.bindings for n in ir.walk(b.value) if isinstance(n, ir.Lookup)]
    assert lookups and all(n.name == "token_id" and n.keys == VOCAB for n in lookups)


def test_next_number_projection():
    p = program("logits = project(inp=tokens, op=(token_id(out) == token_id(inp) + 1));\n"
                "prediction = softmax(logits);\n@output prediction;")
    assert run(p, ["<bos>", "0", "1", "2"])[1:] == ["1", "2", "3"]


@settings(max_examples=30, deadline=None)
@given(st.lists(st.sampled_from(["0", "1", "2", "3"]), min_size=1, max_size=6))
def test_smallest_key_above_the_query(xs):
    """The score `(id(k) > id(q)) * (10 - id(k))` picks, among the prefix's keys above the
    query, the smallest (the sort model's head); softmax makes it the hardest."""
    p = program("nxt = aggregate(s=select(k=tokens, q=tokens, op=((token_id(k) > token_id(q)) "
                "* (100 - 20 * token_id(k)))), v=tokens);\n@output nxt;")
    out = run(p, ["<bos>"] + xs)
    for i, q in enumerate(xs, start=1):
        above = [k for k in ["<bos>"] + xs[:i] if VOCAB.index(k) > VOCAB.index(q)
                 and k != "<bos>"]
        if above:
            assert out[i] == min(above, key=VOCAB.index)


def test_a_constant_is_folded_and_checked():
    p = program('x = tokens == "0";\nc = token_id("2");\n@output x;')
    assert p is not None
    with pytest.raises(RaspError) as err:
        program('c = token_id("9");\n@output tokens;')
    assert err.value.diagnostics[0].code == "E206"


def test_needs_vocab_first():
    with pytest.raises(RaspError) as err:
        grammar.parse("ids = token_id(tokens);\n@output ids;")
    assert err.value.diagnostics[0].code == "E205"
