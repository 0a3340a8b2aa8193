"""`tally` (counts read off a uniform mean) and the logits read out as one table over counts
(extractor/decompile/readout.py)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import grammar
from extractor.decompile.readout import read_out
from rasp_ir import nodes as ir
from rasp_ir import passes
from rasp_ir.diagnostics import RaspError
from rasp_ir.interpreter import run
from rasp_ir.printer import pretty

HEAD = '''@vocab {"a", "b", "<bos>"};
@maxlen 24;
@causal;
@bos "<bos>";
@attention "softmax";
'''

TALLY = HEAD + '''frac = aggregate(s=select(k=tokens, op=False), v=tokens);
depth = tally(frac, "a", "b", 0, 2);
n_a = tally(frac, "a", None, 0, 5);
@output depth;
'''


def parse(text):
    return grammar.parse(text, "readout.rasp")


def words(draw_lengths=st.integers(0, 20)):
    return st.lists(st.sampled_from(["a", "b"]), max_size=20).map(lambda w: ["<bos>"] + w)


@settings(max_examples=60, deadline=None)
@given(words())
def test_tally_counts_what_the_uniform_mean_averaged(word):
    program = parse(TALLY)
    depth = run(program, [word])[0].output
    n_a = run(program, [word], ir.Ref("n_a"))[0].output
    for i in range(len(word)):
        seen = word[:i + 1]
        assert depth[i] == min(max(seen.count("a") - seen.count("b"), 0), 2)
        assert n_a[i] == min(seen.count("a"), 5)


def test_tally_round_trips_and_is_not_compiled():
    program = parse(TALLY)
    assert parse(pretty(program)) == program
    from compiler.validate import validate
    problems = validate(program, 24)
    assert any("tally" in p.message for p in problems)


@pytest.mark.parametrize("call, code", [
    ('tally(frac, "c", "b", 0, 2)', "E201"),     # not a basis value
    ('tally(frac, "a", "a", 0, 2)', "E201"),     # the same value twice
    ('tally(frac, "a", "b", 2, 0)', "E205"),     # low above high
    ('tally(frac, "a", "b", 0.5, 2)', "E205"),   # not a whole number
])
def test_tally_errors(call, code):
    with pytest.raises(RaspError) as info:
        parse(HEAD + f"frac = aggregate(s=select(k=tokens, op=False), v=tokens);\n"
              f"x = {call};\n@output x;\n")
    assert code in str(info.value)


# a "model": a head that is not quite uniform, and logits from a table over its rows that
# say which brackets may come next (the Dyck-2 rule over depth 0 … 2)
MODEL = HEAD + '''h = aggregate(s=select(k=tokens, op=matrix(rows={"a": 0.02, "b": -0.01, "<bos>": 0})),
              v=tokens);
depth = tally(aggregate(s=select(k=tokens, op=False), v=tokens), "a", "b", 0, 2);
logits = project(inp=depth, op=matrix(cols=["a", "b", "<bos>"], rows={
    0: [5, -5, -5],
    1: [5, 5, -5],
    2: [-5, 5, -5],
})) + project(inp=h, op=matrix(cols=["a", "b", "<bos>"], rows={
    "a": [0.1, 0, 0], "b": [0, 0.1, 0], "<bos>": [0, 0, 0.1]}));
prediction = sigmoid(logits);
@output prediction;
'''


def dyck_words(n, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        word, depth = ["<bos>"], 0
        for _ in range(rng.integers(1, 20)):
            if depth == 0 or (depth < 2 and rng.random() < 0.5):
                word.append("a")
                depth += 1
            else:
                word.append("b")
                depth -= 1
        out.append(word)
    return out


def test_read_out_finds_the_table_over_the_count():
    model = parse(MODEL)
    sequences = dyck_words(200)
    want = [r.output for r in run(model, sequences)]

    def accepts(candidate):
        got = [r.output for r in run(candidate, sequences)]
        same = sum(g == w for g, w in zip(got, want)) / len(want)
        return same == 1.0, same

    found, entry = read_out(model, sequences, ("<bos>",), accepts)
    assert found is not None, entry
    assert "tally" in entry["primitive"]
    # the aggregate `h` the logits no longer need is gone, and the table fits the page
    text = pretty(passes.inline_tables(found))
    assert "h" not in {b.name for b in found.bindings} and "tally(" in text
    assert parse(text) == passes.inline_tables(found)
    held_out = dyck_words(100, seed=1)
    assert [r.output for r in run(found, held_out)] == [r.output for r in run(model, held_out)]


def test_read_out_says_why_when_nothing_is_accepted():
    model = parse(MODEL)
    found, entry = read_out(model, dyck_words(50), ("<bos>",), lambda c: (False, None))
    assert found is None
    assert entry["readings"] > 0 and "best" in entry


def test_score_tables_the_read_out_does_not_need_are_dropped():
    # the head's token table only blurs `h`, which the logits no longer read once they read
    # the count: the read-out drops it (judged), and with it `h`
    model = parse(MODEL.replace('op=matrix(rows={"a": 0.02, "b": -0.01, "<bos>": 0})',
                                'op=matrix(rows={"a": 0.02, "b": -0.01, "<bos>": 0}))'
                                ' + select(k=tokens, q=tokens, op=matrix(cols=["a", "b", '
                                '"<bos>"], rows={"a": [0, 1, 0], "b": [1, 0, 0], '
                                '"<bos>": [0, 0, 0]})'))
    from extractor.decompile.readout import drop_table_terms
    sequences = dyck_words(100)
    want = [r.output for r in run(model, sequences)]
    # a stand-in judge: the model's decisions everywhere, and `h` is then not needed
    dropped_model, dropped = drop_table_terms(model, lambda c: (
        [r.output for r in run(c, sequences)] == want, 1.0))
    assert len(dropped) >= 1
    assert [r.output for r in run(dropped_model, sequences)] == want


def test_a_periodic_language_is_read_as_the_position_modulo():
    # (abab)*: what may come next is the position modulo 4 (the <bos> is position 0)
    model = parse(HEAD + '''h = aggregate(s=select(k=indices, q=indices, op=(k == q - 2)), v=tokens);
logits = project(inp=product(tokens, harden(h)), op=matrix(cols=["a", "b", "<bos>"], rows={
    "a,a": [-5, 5, -5], "a,b": [-5, 5, -5], "a,<bos>": [-5, 5, -5],
    "b,a": [5, -5, -5], "b,b": [5, -5, -5], "b,<bos>": [5, -5, -5],
    "<bos>,a": [5, -5, -5], "<bos>,b": [5, -5, -5], "<bos>,<bos>": [5, -5, -5]}));
prediction = sigmoid(logits);
@output prediction;
''')
    sequences = [["<bos>"] + list("abab" * 5)[:n] for n in range(1, 20)]
    want = [r.output for r in run(model, sequences)]
    found, entry = read_out(model, sequences, ("<bos>",), lambda c: (
        [r.output for r in run(c, sequences)] == want, 1.0))
    assert found is not None and entry["primitive"] == "table over indices % 2"
    assert "pos_mod_2 = indices % 2;" in pretty(found)


# a "model" deciding by a weighted difference of two heads' mixes (a head over the whole
# prefix against one over the last three positions) plus an opaque MLP that adds little:
# no table over thresholds or hardened heads states the weighted sum, the linear read-out
# does (a bias for "a" breaks the exact ties argmax would break by order)
WEIGHED = HEAD + '''h1 = aggregate(s=select(k=tokens, op=matrix(rows={"a": 0.4, "b": 0, "<bos>": -1})),
               v=tokens);
h2 = aggregate(s=select(k=indices, q=indices, op=(k >= q - 2)), v=tokens);
m = mlp(h1, W_in=matrix(rows=[0, 1, 2], cols=[0], values=[[1], [-1], [0]]),
        b_in=matrix(rows=[0], values=[0]), W_out=matrix(rows=[0], cols=[0], values=[[1]]),
        b_out=matrix(rows=[0], values=[0]));
logits = project(inp=h1, op=matrix(cols=["a", "b", "<bos>"], rows={
    "a": [2, -2, -10], "b": [-2, 2, -10], "<bos>": [0, 0, -10]}))
  + project(inp=h2, op=matrix(cols=["a", "b", "<bos>"], rows={
    "a": [-1, 1, 0], "b": [1, -1, 0], "<bos>": [0, 0, 0]}))
  + project(inp=m, op=matrix(cols=["a", "b", "<bos>"], rows={0: [0.01, 0, 0]}))
  + project(op=matrix(rows={"a": 0.1, "b": 0, "<bos>": 0}));
prediction = softmax(logits);
@output prediction;
'''


def random_words(n, seed):
    rng = np.random.default_rng(seed)
    return [["<bos>"] + list(rng.choice(["a", "b"], size=int(rng.integers(1, 20))))
            for _ in range(n)]


def decisions(program, sequences):
    return [np.asarray(r.logits if r.logits is not None else r.output).argmax(-1)
            for r in run(program, sequences)]


def test_read_out_weighs_two_heads_linearly_where_no_table_does():
    model = parse(WEIGHED)
    sequences = random_words(300, 0)
    want = decisions(model, sequences)

    def accepts(candidate):
        got = decisions(candidate, sequences)
        share = np.mean([(g == w).all() for g, w in zip(got, want)])
        return share >= 0.97, share

    found, entry = read_out(model, sequences, ("<bos>",), accepts)
    assert found is not None, entry
    assert "h1" in entry["primitive"] and "h2" in entry["primitive"], entry
    assert not any(isinstance(b.value, ir.Mlp) for b in found.bindings)
    text = pretty(passes.inline_tables(found))
    assert parse(text) == passes.inline_tables(found)
    held_out = random_words(200, 1)
    got, want = decisions(found, held_out), decisions(model, held_out)
    assert np.mean([(g == w).all() for g, w in zip(got, want)]) >= 0.95


def test_the_linear_read_out_fits_the_data_it_is_given_and_is_judged_on_other():
    # the fit is to the sequences and decisions passed in (the model's, on sequences of
    # their own), not the program's own on the judged ones: "b" at every scored position
    # (the even ones) of other sequences, and the read-out judged on these says "b" there
    model = parse(WEIGHED)
    judged, fitted = random_words(100, 2), random_words(200, 3)
    scored = [np.arange(len(s)) % 2 == 0 for s in fitted]
    decided = [np.full(len(s), 1) for s in fitted]             # "b"

    def accepts(candidate):
        got = decisions(candidate, judged)
        return all((g[::2] == 1).all() for g in got), 1.0

    found, entry = read_out(model, judged, ("<bos>",), accepts,
                            fit=lambda: (fitted, scored, decided))
    assert found is not None, entry
    assert entry["primitive"].startswith("tables over"), entry


def test_score_tables_left_at_full_precision_are_rounded_where_the_judge_keeps_it():
    from extractor.decompile.readout import round_table_terms
    model = parse(MODEL.replace('op=matrix(rows={"a": 0.02, "b": -0.01, "<bos>": 0})',
                                'op=matrix(rows={"a": 0.0213, "b": -0.0108, "<bos>": 0.3})'))
    sequences = dyck_words(60)
    want = [r.output for r in run(model, sequences)]
    rounded, done = round_table_terms(model, lambda c: (
        [r.output for r in run(c, sequences)] == want, 1.0))
    assert done == ["0 decimals: a 3 x 1 score table over tokens"]
    assert "0.0213" not in pretty(rounded) and [r.output for r in run(rounded, sequences)] == want
    # a judge that refuses everything leaves the table as it was
    same, none = round_table_terms(model, lambda c: (False, None))
    assert none == [] and same == model
