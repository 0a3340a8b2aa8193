"""The reference semantics on hand-checked cases: masking, BOS, both attention kinds, D-RASP
vectors and logits, input validation, tables in side-files."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import grammar
from rasp_ir import nodes as ir
from rasp_ir.diagnostics import RaspError
from rasp_ir.interpreter import run
from rasp_ir.printer import pretty


def outputs(src, inputs, name=None):
    program = grammar.parse(src)
    node = program.binding(name).value if name else None
    return [r.output for r in run(program, inputs, node=node)]


def test_batches_of_mixed_lengths_keep_input_order():
    src = "r = aggregate(select(indices, length - indices - 1, ==), tokens);\n@output r;"
    words = ["hello", "ab", "xyz", "a", "qwerty", "ab"]
    assert outputs(src, words) == [list(w[::-1]) for w in words]


def test_causal_masks_selectors_and_length_is_prefix_length():
    src = "@causal;\nw = selector_width(select(1, 1, ==));\nl = length;\n@output w;"
    assert outputs(src, ["abcd"]) == [[1, 2, 3, 4]]
    assert outputs(src, ["abcd"], "l") == [[1, 2, 3, 4]]
    # without @causal every query sees every key
    assert outputs("w = selector_width(select(1, 1, ==));\n@output w;", ["abcd"]) == [[4] * 4]


def test_not_of_a_causal_selector_stays_causal():
    src = ("@causal;\nw = selector_width(not select(indices, indices, ==));\n@output w;")
    assert outputs(src, ["abcd"]) == [[0, 1, 2, 3]]


def test_bos_is_validated_and_prepended_on_request():
    src = '@vocab {"<bos>", "a"};\n@bos "<bos>";\nx = indices;\n@output x;'
    program = grammar.parse(src)
    with pytest.raises(RaspError) as info:
        run(program, [["a", "a"]])
    assert info.value.codes == ["R233"]
    assert run(program, [["a", "a"]], add_bos=True)[0].input == ("<bos>", "a", "a")


@pytest.mark.parametrize("inputs, code", [
    ([["a", "z"]], "R233"), (["aaaaaa"], "R233"), ([[]], "R234"), ([["a", 3]], "R234"),
])
def test_input_validation(inputs, code):
    program = grammar.parse('@vocab {"a", "b"};\n@maxlen 5;\nx = tokens;\n@output x;')
    with pytest.raises(RaspError) as info:
        run(program, inputs)
    assert info.value.codes == [code]


def test_token_views():
    assert outputs("x = tokens_int + 1;\n@output x;", [["3", "4"]]) == [[4, 5]]
    assert outputs("x = tokens_str + \"!\";\n@output x;", [[3, 4]]) == [["3!", "4!"]]
    with pytest.raises(RaspError) as info:
        outputs("x = tokens_int;\n@output x;", ["ab"])
    assert info.value.codes == ["R201"]


def test_a_numeric_score_over_strings_is_a_runtime_error():
    """`op=(k + q)` over tokens concatenates text: a score must be a number (the long fuzz
    run met this as a ValueError inside the interpreter)."""
    src = ('@vocab {"a", "b"};\n@maxlen 4;\n@attention "softmax";\n'
           "x = aggregate(select(k=tokens, q=tokens, op=(k + q)), tokens);\n@output x;")
    with pytest.raises(RaspError) as info:
        run(grammar.parse(src), [["a", "b"]])
    assert info.value.codes == ["R201"]
    assert "'aa'" in str(info.value)

def test_softmax_aggregate_of_hard_selector_matches_hard_mean_when_one_key():
    src = ('@vocab V = {"a", "b", "c"};\n@maxlen 6;\n'
           "s = select(indices, indices - 1, ==);\n"
           "soft = aggregate(s + s, tokens);\n"       # a score: softmax, a distribution
           "hard = harden(soft);\n@output hard;")
    program = grammar.parse(src)
    (result,) = run(program, ["abcab"])
    # position 0 has no previous token: softmax attends uniformly, argmax is the first basis
    assert result.output[1:] == ["a", "b", "c", "a"]
    dist = run(program, ["abc"], node=program.binding("soft").value)[0].logits
    assert np.allclose(dist[2], [0, 1, 0], atol=1e-6)
    # position 0 selects nothing: softmax over equal scores attends uniformly to all keys
    assert np.allclose(dist[0], [1 / 3, 1 / 3, 1 / 3])


def test_score_scale_and_soft_mean_of_numbers():
    src = ("@causal;\ns = 0.0 * select(1, 1, ==);\n"      # all-zero scores: uniform prefix
           "m = aggregate(s, numerical(indices));\n@output m;")
    assert outputs(src, ["abcd"]) == [[0.0, 0.5, 1.0, 1.5]]


def test_drasp_program_end_to_end():
    src = '''
@vocab V = {"<bos>", "a", "b"};
@maxlen 8;
@causal;
@bos "<bos>";
s1 = select(q=indices, k=indices, op=(k == q - 1));
s2 = select(k=tokens, op=(k == "<bos>"));
a1 = aggregate(s=s1 + 0.5 * s2, v=tokens);
l1 = project(inp=a1, op=(inp == out));
l2 = project(op=matrix(rows=V, values=[0.0, 0.0, 1.0]));
prediction = softmax(l1 + l2);
@output prediction;
'''
    program = grammar.parse(src)
    (result,) = run(program, [["<bos>", "a", "b", "a"]])
    assert result.output == ["<bos>", "<bos>", "a", "b"]
    assert len(result.logits) == 4 and len(result.logits[0]) == 3
    assert all(math.isclose(sum(row), 1.0) for row in result.logits)
    assert grammar.parse(pretty(program)) == program


def test_lookup_sharpen_exists_and_mlp():
    src = '''
@vocab V = {"a", "b"};
@maxlen 4;
avg = aggregate(select(1, 1, ==) + select(1, 1, ==), tokens);
up = lookup(avg, matrix(rows=V, cols=["x", "y", "z"], values=[[1, 0, 0], [0, 2, 1]]));
sharp = sharpen(avg, 3);
has_a = exists(avg, "a", 0.5);
net = mlp(avg, W_in=matrix(rows=[0, 1], cols=[0], values=[[1], [-1]]),
          b_in=matrix(rows=[0], values=[0]), W_out=matrix(rows=[0], cols=["o"], values=[[2]]),
          b_out=matrix(rows=["o"], values=[1]));
@output up;
'''
    program = grammar.parse(src)
    get = lambda name: run(program, ["aab"], node=program.binding(name).value)[0]  # noqa: E731
    assert np.allclose(np.array(get("up").logits if get("up").logits else get("up").output)[0],
                       [2 / 3, 2 / 3, 1 / 3])
    sharp = get("sharp").logits[0]
    assert np.allclose(sharp, [8 / 9, 1 / 9])
    assert get("has_a").output == [True, True, True]
    h = 1 / 3   # W_in projects (2/3, 1/3) to 1/3; GELU(1/3) * 2 + 1
    gelu = 0.5 * h * (1 + math.tanh(math.sqrt(2 / math.pi) * (h + 0.044715 * h ** 3)))
    assert np.allclose(get("net").output[0], [2 * gelu + 1])
    assert grammar.parse(pretty(program)) == program


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(-60, 60, allow_nan=False), min_size=1, max_size=40))
def test_gelu_is_gpt2s_formula(xs):
    """The interpreter's gelu (torch's kernel, in float64) is GPT-2's tanh approximation
    as written, to the last bits, and leaves its input as it was."""
    from rasp_ir.interpreter import mlp_activation
    x = np.array(xs).reshape(1, -1)
    x.flags.writeable = False                       # the memo's arrays are read-only
    got = mlp_activation(x, "gelu")
    want = [0.5 * h * (1 + math.tanh(math.sqrt(2 / math.pi) * (h + 0.044715 * h ** 3)))
            for h in xs]
    assert np.allclose(got[0], want, rtol=1e-14, atol=1e-300)
    assert got.dtype == np.float64 and np.array_equal(x[0], xs)
    assert np.array_equal(mlp_activation(x, "relu")[0], np.maximum(xs, 0))


def test_named_tables_live_in_the_side_file(tmp_path):
    from rasp_ir.printer import named_tables
    from rasp_ir.tables import read_tables, side_file, write_tables
    table = ir.Matrix(("a", "b"), ("a", "b"), ((0.0, 1.0), (1.0, 0.0)), name="swap")
    write_tables(side_file(tmp_path / "p.rasp"), {"swap": table})
    assert read_tables(side_file(tmp_path / "p.rasp"))["swap"] == table
    src = ('@vocab V = {"a", "b"};\n@maxlen 4;\n'
           's = select(q=tokens, k=tokens, op=table("swap"));\n'
           'a = harden(aggregate(s, tokens));\n@output a;\n')
    (tmp_path / "p.rasp").write_text(src)
    program = grammar.load(tmp_path / "p.rasp")
    assert run(program, ["ab"])[0].output == ["b", "a"]
    assert "table(\"swap\")" in pretty(program)
    assert named_tables(program) == {"swap": table}
    (tmp_path / "q.rasp").write_text(src)
    with pytest.raises(RaspError) as info:
        grammar.load(tmp_path / "q.rasp")
    assert info.value.codes == ["E252"]


def test_float_and_bool_outputs():
    assert outputs("x = indicator(tokens == \"a\");\n@output x;", ["aba"]) == [[1, 0, 1]]
    assert outputs("x = tokens == \"a\";\n@output x;", ["ab"]) == [[True, False]]
    assert outputs("x = aggregate(select(1, 1, ==), indicator(tokens == \"a\"));\n@output x;",
                   ["aab"]) == [[2 / 3] * 3]


def test_write_program_round_trips_with_its_tables(tmp_path):
    from rasp_ir.tables import side_file, write_program
    table = ir.Matrix(("a", "b"), ("a", "b"), ((0.0, 2.5), (1.0, -1e-3)), name="L0H0")
    program = grammar.parse('@vocab V = {"a", "b"};\n@maxlen 4;\n'
                            's = select(q=tokens, k=tokens, op=matrix(rows=V, cols=V, '
                            'values=[[0, 1], [1, 0]]));\n@output harden(aggregate(s, tokens));')
    import attrs
    select = program.binding("s").value
    program = attrs.evolve(program, bindings=(attrs.evolve(
        program.bindings[0], value=attrs.evolve(select, predicate=table)),))
    write_program(program, tmp_path / "x.rasp")
    assert side_file(tmp_path / "x.rasp").exists()
    assert grammar.load(tmp_path / "x.rasp") == program


def test_a_memo_shares_binding_values_between_programs_computed_alike():
    from rasp_ir.interpreter import Memo, evaluate
    head = ('@vocab {"a", "b", "c"}; @maxlen 6;\n'
            'prev = aggregate(select(indices, indices - 1, ==), tokens, "a");\n'
            'width = selector_width(select(tokens, prev, ==));\n')
    first = grammar.parse(head + 'out = width + 1;\n@output out;')
    second = grammar.parse(head + 'out = width * 2;\n@output out;')
    changed = grammar.parse(head.replace('"a");', '"b");') + 'out = width * 2;\n@output out;')
    inputs = [list("abca"), list("cc"), list("bacab"), list("ab")]
    memo = Memo()
    for program in (first, second, changed, first):
        fresh = evaluate(program, inputs, program.output)
        kept = evaluate(program, inputs, program.output, memo=memo)
        assert all(np.array_equal(a, b) for a, b in zip(fresh, kept))
    # per length group (3): `first` computes 3 bindings; `second` reuses prev and width;
    # `changed` recomputes all (prev's default differs, and width reads prev); `first` again
    # reuses prev and width from two evaluations back, and recomputes `out`
    assert (memo.hits, memo.misses) == (3 * 2 + 3 * 2, 3 * 3 + 3 * 1 + 3 * 3 + 3 * 1)
    for value, _ in memo.entries.values():
        assert not value.flags.writeable
    memo.next_evaluation()
    memo.next_evaluation()
    assert memo.entries
    memo.next_evaluation()
    assert not memo.entries       # nothing used in the last two evaluations is kept


def test_an_aggregate_of_booleans_keeps_them_beside_a_numeric_default():
    """default=11 once turned every selected True into 1 (numpy's bool-to-int promotion),
    where the compiled model decodes True (found by test_random_programs_compile_exactly)."""
    program = grammar.parse('@vocab {0, -2};\n@maxlen 6;\ns = tokens == -2;\n'
                            "x = aggregate(select(indices, indices, lambda k, q: k == q + 1), "
                            "s, default=11);\n@output x;\n")
    (result,) = run(program, [[-2, -2]])
    assert result.output == [True, 11] and result.output[0] is True


def test_a_projects_predicate_table_is_built_once_per_program(monkeypatch):
    # the table depends on the types alone; rebuilt per batch (one per length) it was most
    # of an extraction's judging
    from rasp_ir import interpreter
    program = grammar.parse('''@vocab {"a", "b"};
@maxlen 8;
logits = project(inp=tokens, op=(inp != out)) + project(op=(out == "a"));
@output logits;
''')
    built = []
    original = interpreter._Group._table

    def counting(self, *args):
        built.append(args[0])
        return original(self, *args)
    monkeypatch.setattr(interpreter._Group, "_table", counting)
    words = ["a", "ab", "bba", "abab", "b"]          # four lengths: four batches
    got = run(program, words)
    assert len(built) == 2                           # one per project, not per batch
    for word, result in zip(words, got):
        logits = np.asarray(result.logits)
        for i, t in enumerate(word):
            want = [(0.0 if t == o else 1e4) + (1e4 if o == "a" else 0.0) for o in "ab"]
            assert np.allclose(logits[i], want)
