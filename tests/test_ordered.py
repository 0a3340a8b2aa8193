"""`least_above` and `greatest_below`: a head's values scanned from another value, the step a
sort's MLP takes (rasp_ir/primitives.py), in the language, the interpreter, the validator and
the extractor's MLP candidates."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import grammar
from compiler.validate import validate
from extractor.decompile.primitives import MlpPrimitive, ordered_primitives
from extractor.decompile.replace import ordered_candidates
from rasp_ir import nodes as ir
from rasp_ir import primitives as semantics
from rasp_ir import types as T
from rasp_ir.diagnostics import RaspError
from rasp_ir.interpreter import evaluate
from rasp_ir.printer import pretty

VOCAB = ("0", "1", "2", "3", "4", "<bos>", "<sep>")
NUMBERS = VOCAB[:5]
HEAD = ('@vocab {' + ", ".join(f'"{v}"' for v in VOCAB) + '};\n@maxlen 12;\n@causal;\n'
        '@bos "<bos>";\n@attention "softmax";\n')
# a head that favours the keys above the query (token ids compare the vocabulary order)
SORT = HEAD + '''a = aggregate(s=3 * select(k=tokens, q=tokens, op=token_id(k) > token_id(q)),
              v=tokens);
up = least_above(a, tokens, "0", "4", 0.15);
down = greatest_below(a, tokens, "1", "3");
@output up;
'''


def _oracle(name, row, basis, y, first, last, threshold):
    """One output read off one row as the semantics state it (plain Python)."""
    chosen = list(basis[basis.index(first):basis.index(last) + 1])
    if y in chosen:
        at = chosen.index(y)
        chosen = chosen[at + 1:] if name == "least_above" else chosen[:at]
    if name == "greatest_below":
        chosen = chosen[::-1]
    entry = dict(zip(basis, row))
    return next((v for v in chosen if entry[v] > threshold), None)


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_the_semantics_read_row_by_row(data):
    width = len(VOCAB)
    rows = data.draw(st.lists(st.lists(st.sampled_from([0.0, 0.05, 0.1, 0.2, 0.3, 0.6]),
                                       min_size=width, max_size=width), min_size=1,
                              max_size=6), label="rows")
    ys = data.draw(st.lists(st.sampled_from(VOCAB), min_size=len(rows), max_size=len(rows)),
                   label="y")
    first, last = data.draw(st.sampled_from([("0", "4"), ("1", "3"), ("0", "1")]), label="range")
    threshold = data.draw(st.sampled_from([0.0, 0.05, 0.1, 0.25]), label="threshold")
    X = np.asarray(rows)
    Y = np.eye(width)[[VOCAB.index(y) for y in ys]]
    for name in sorted(semantics.COMPARED):
        params = (first, last, threshold)
        basis = semantics.output_basis(name, params, VOCAB)
        codes = semantics.apply(name, params, X, VOCAB, Y, basis_y=VOCAB)
        library = MlpPrimitive(name, "n", params, arity=2).apply(X, VOCAB, Y, VOCAB)
        for i, row in enumerate(rows):
            want = _oracle(name, row, VOCAB, ys[i], first, last, threshold)
            assert basis[codes[i]] == want, (name, row, ys[i])
            assert library[i].tolist() == [float(j == codes[i]) for j in range(len(basis))]


def test_a_program_reads_the_next_value_above_and_below():
    program = grammar.parse(SORT, "sort.rasp")
    types = T.infer(program)[0]
    assert types["up"] == T.Cat(NUMBERS + (None,))
    assert types["down"] == T.Cat(("1", "2", "3", None))
    word = ["<bos>", "3", "1", "4", "<sep>", "0"]
    up = evaluate(program, [word], ir.Ref("up"))[0].tolist()
    a = np.asarray(evaluate(program, [word], ir.Ref("a"))[0])
    # the head sees the keys above each query most; up is the first of them above the token
    # that it holds more than 0.15 of
    for i, token in enumerate(word):
        entry = dict(zip(VOCAB, a[i]))
        above = [v for v in NUMBERS if (token not in NUMBERS or v > token) and entry[v] > 0.15]
        assert up[i] == (above[0] if above else None)
    assert up[4] == "1"          # at <sep> (no candidate) every value counts: the smallest seen
    assert grammar.parse(pretty(program), "again.rasp") == program


@pytest.mark.parametrize("line, words", [
    ('x = least_above(a, a, "0", "4", 0.1);', ["categorical", "harden"]),
    ('x = least_above(a, tokens, "0", "9", 0.1);', ["'9'", "not in the basis"]),
    ('x = least_above(a, tokens, "3", "1", 0.1);', ["does not come after"]),
    ('x = greatest_below(a, tokens, "0", "4", "high");', ["threshold", "number"]),
])
def test_errors_name_what_is_wrong(line, words):
    head = HEAD + 'a = aggregate(s=select(k=tokens, op=True), v=tokens);\n'
    with pytest.raises(RaspError) as info:
        grammar.parse(head + line + "\n@output x;\n", "bad.rasp")
    text = str(info.value)
    assert "bad.rasp:7" in text
    for word in words:
        assert word in text


def test_the_validator_lists_it_with_a_reason():
    problems = validate(grammar.parse(SORT), 12)
    assert any("least_above" in p.message and "step" in p.message for p in problems)


def test_candidates_span_the_longest_run_of_ordinary_values():
    prims = ordered_primitives(VOCAB, VOCAB)
    assert {p.name for p in prims} == semantics.COMPARED
    assert {p.params[:2] for p in prims} == {("0", "4")}
    assert ordered_primitives(("a", "<bos>", "b"), ("a", "b")) == []      # no run of three
    assert ordered_primitives(VOCAB, ("<bos>",)) == []                     # y shares none
    assert prims[0].variable_name("a0_0_token", "token") == "next_above_token"


def test_the_mlp_candidate_takes_the_threshold_that_explains_most():
    """An MLP that writes the value least_above(a, token, 0.2) gives: the fit of each
    threshold is judged by the variance it explains, and 0.2's is exact."""
    rng = np.random.default_rng(0)
    n = 400
    X = rng.dirichlet(np.full(len(VOCAB), 0.4), size=n)
    tokens = rng.integers(len(VOCAB), size=n)
    Y = np.eye(len(VOCAB))[tokens]
    truth = MlpPrimitive("least_above", "n", ("0", "4", 0.2), arity=2).apply(X, VOCAB, Y, VOCAB)
    out = truth @ rng.normal(size=(truth.shape[1], 8))
    rows = {ir.Ref("a"): (X, VOCAB), ir.Tokens(): (Y, VOCAB)}
    found = ordered_candidates([ir.Ref("a"), ir.Tokens()], rows, {ir.Tokens()}, out,
                               float(out.var(0).sum()))
    best = {p.name: (p.params, args) for p, args in found}
    assert best["least_above"] == (("0", "4", 0.2), (ir.Ref("a"), ir.Tokens()))


def test_none_votes_for_eos_in_the_logit_label_that_names_it():
    """The logit candidate for a variable that can be None (least_above's end): each value
    votes for itself, None for <eos>; its label computes that table."""
    from extractor.decompile.primitives import logit_primitives
    (prim,) = [p for p in logit_primitives() if p.none_rows]
    rows, cols = NUMBERS + (None,), VOCAB + ("<eos>",)
    matrix = prim.matrix(rows, cols)
    assert matrix[-1].tolist() == [float(v == "<eos>") for v in cols]
    assert matrix[:-1].tolist() == [[float(r == c) for c in cols] for r in NUMBERS]
    assert prim.matrix(NUMBERS, cols) is None              # no None: the plain diagonal's job
    text = SORT.replace("@output up;", f"logits = project(inp=up, op={prim.label()});\n"
                        "@output logits;")
    program = grammar.parse(text.replace('"<sep>"};', '"<sep>", "<eos>"};'), "sort.rasp")
    word = ["<bos>", "3", "1", "4", "<sep>", "0"]
    up = evaluate(program, [word], ir.Ref("up"))[0].tolist()
    logits = np.asarray(evaluate(program, [word], program.output)[0])
    vocab = program.vocab
    for i, value in enumerate(up):
        want = "<eos>" if value is None else value
        assert logits[i].argmax() == vocab.index(want) and logits[i].max() > 0
