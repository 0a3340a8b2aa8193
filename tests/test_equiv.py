"""`rasp equiv`: equal programs are proven equal, and broken ones are caught with a minimal,
real counterexample.

The mutation test breaks examples at the IR level (tests/mutants.py), keeps the mutants the
interpreter shows to behave differently on some input, and checks that the equivalence checker
catches each, that its counterexample really differs when re-run through the interpreter, that
it is no longer than the interpreter's own witness, and that no shorter prefix differs. The
default run covers the small examples; `-m slow` covers every example, and the property-based
mode (no exhaustive search) on every mutant.
"""

import json

import pytest
from hypothesis import settings

import grammar
from conftest import EXAMPLES
from mutants import behaviour_changes, differs, inputs, mutants
from rasp_ir.cli import main
from rasp_ir.equiv import equivalent
from rasp_ir.printer import pretty
from rasp_ir.search import InputSpace, shrink

# Hypothesis examples per search: small under the dev/ci profiles, large under `thorough`
HYPOTHESIS_EXAMPLES = settings.default.max_examples

SMALL = ["count", "histogram", "length", "sort", "sort_unique", "most_frequent", "parity",
         "majority", "dyck1", "reverse", "frac_prevs", "pair_balance"]
ALL = sorted(p.stem for p in EXAMPLES.glob("*.rasp"))


def load(name):
    return grammar.load(EXAMPLES / f"{name}.rasp")


def program(text):
    return grammar.parse(text)


def check(a, b, **options):
    options.setdefault("examples", 300)
    options.setdefault("hypothesis_examples", HYPOTHESIS_EXAMPLES)
    return equivalent(a, b, **options)


# ---------------------------------------------------------------- equal programs

@pytest.mark.parametrize("name", ALL)
def test_a_program_equals_its_canonical_form(name):
    source = load(name)
    canonical = grammar.parse(pretty(source), str(EXAMPLES / f"{name}.rasp"))
    result = check(source, canonical, bound=20_000)
    assert result.equal, result.counterexample
    assert result.search.exhaustive_up_to >= min(3, result.max_len)
    if result.search.space.total() <= 20_000:
        assert result.proven and result.search.mode == "exhaustive"


LENGTH_A = """@vocab {"a", "b", "c", "d"}; @maxlen 6;
n = selector_width(select(tokens, tokens, op=True)); @output n;"""
LENGTH_B = """@vocab {"a", "b", "c", "d"}; @maxlen 6;
n = length; @output n;"""
PARITY_A = """@vocab {"0", "1"}; @maxlen 10; @causal;
ones = prefix_count(tokens == "1"); parity = ones % 2; @output parity;"""
PARITY_B = """@vocab {"0", "1"}; @maxlen 10; @causal;
zeros = prefix_count(tokens == "0");
parity = 1 if (indices + 1 - zeros) % 2 == 1 else 0; @output parity;"""
REVERSE_B = """@vocab {"a", "b", "c", "d", "e", "h", "l", "o"}; @maxlen 16;
opp = length - 1 - indices;
flip = select(k=indices, q=opp, op=(k == q));
reverse = aggregate(flip, tokens); @output reverse;"""
HIST_B = """@vocab {"a", "b", "c", "d"}; @maxlen 5;
hist = selector_width(select(k=tokens, q=tokens, op=(q == k))); @output hist;"""


@pytest.mark.parametrize("a, b", [(LENGTH_A, LENGTH_B), (PARITY_A, PARITY_B),
                                  ("reverse", REVERSE_B), ("histogram", HIST_B)])
def test_different_but_equivalent_programs_are_proven_equal(a, b):
    a = load(a) if "@" not in a else program(a)
    result = check(a, program(b), max_len=min(a.maxlen, 5))
    assert result.equal and result.proven and result.search.mode == "exhaustive"
    assert result.search.checked == result.search.space.total()


def test_bos_programs_start_every_input_with_bos():
    source = load("drasp_copy")
    result = check(source, grammar.parse(pretty(source)), max_len=5)
    assert result.proven
    space = result.search.space
    assert space.bos == "<bos>" and "<bos>" not in space.alphabet
    # lengths count the BOS: 1 + 6 + 36 + 216 + 1296 inputs
    assert result.search.checked == sum(6 ** k for k in range(5))


# ---------------------------------------------------------------- differences

LONG_A = """@vocab {"a", "b", "c", "d"}; @maxlen 10; out = tokens; @output out;"""
LONG_B = """@vocab {"a", "b", "c", "d"}; @maxlen 10;
out = tokens if length < 9 else "a"; @output out;"""


@pytest.mark.parametrize("examples, hypothesis", [(500, 0), (0, 200)])
def test_a_difference_beyond_the_bound_is_found_and_shrunk(examples, hypothesis):
    # the bound leaves lengths 5-10 to the property-based search (random, then Hypothesis)
    result = check(program(LONG_A), program(LONG_B), bound=1000, examples=examples,
                   hypothesis_examples=hypothesis)
    assert not result.equal and result.search.mode == "exhaustive+property"
    assert result.search.exhaustive_up_to == 4
    assert result.search.found_by == ("random" if examples else "hypothesis")
    c = result.counterexample
    # 1-minimal: nine tokens (the shortest that differ), all "a" but one "b"
    assert len(c.input) == 9 and sorted(c.input) == ["a"] * 8 + ["b"]
    assert c.differs_at == [c.input.index("b")]
    assert len(c.input) <= len(result.search.found)


def test_runtime_errors_are_outputs():
    a = program("""@vocab {"a", "b", "c"}; @maxlen 6;
first = aggregate(select(indices, indices, op=True), tokens); @output first;""")
    b = program("""@vocab {"a", "b", "c"}; @maxlen 6;
first = aggregate(select(k=indices, q=indices, op=(k == 0)), tokens); @output first;""")
    result = check(a, b)
    c = result.counterexample
    assert c.input == ["a", "b"] and c.output_a.startswith("error[R230]")
    assert c.output_b == ["a", "a"]
    # two programs failing the same way on the same inputs agree
    assert check(a, grammar.parse(pretty(a))).proven


def test_numbers_compare_within_the_tolerance():
    a = program("""@vocab {"a", "b"}; @maxlen 4; x = indices / 3; @output x;""")
    b = program("""@vocab {"a", "b"}; @maxlen 4; x = indices * (1 / 3); @output x;""")
    assert check(a, b).proven
    c = program("""@vocab {"a", "b"}; @maxlen 4; x = indices * 0.3334; @output x;""")
    assert check(a, c).counterexample.input == ["a", "a"]
    assert check(a, c, tolerance=1e-3).proven


def test_shrinking_is_one_minimal():
    space = InputSpace(("a", "b", "c"), 12)

    def agree(sequences):      # differ when there are two "c"s somewhere
        import numpy as np
        return np.array([s.count("c") < 2 for s in sequences])
    found, _ = shrink(space, list("abcbbacabcbb"), agree)
    assert found == ["c", "c"]


# ---------------------------------------------------------------- mutation test

def check_mutants(name, **options):
    source = load(name)
    sample = inputs(source)
    kept = 0
    for what, mutant in mutants(source):
        witness = behaviour_changes(source, mutant, sample)
        result = check(source, mutant, **options)
        c = result.counterexample
        if witness is None:
            # no known difference: whatever the checker reports must still be real
            assert c is None or differs(source, mutant, c.input), (name, what)
            continue
        kept += 1
        assert c is not None, (name, what, witness)
        assert differs(source, mutant, c.input), (name, what, c.input)
        head = 1 if source.bos is not None else 0
        if result.search.found_by == "exhaustive":
            assert len(c.input) <= len(witness), (name, what, c.input, witness)
            # least in shortlex order: no shorter prefix differs
            for k in range(max(1, head), len(c.input)):
                assert not differs(source, mutant, c.input[:k]), (name, what, c.input, k)
        else:
            assert len(c.input) <= len(result.search.found), (name, what)
            for i in range(head, len(c.input)):
                shorter = c.input[:i] + c.input[i + 1:]
                if len(shorter) >= 1:
                    assert not differs(source, mutant, shorter), (name, what, c.input, i)
    return kept


@pytest.mark.parametrize("name", SMALL)
def test_every_behaviour_changing_mutant_is_caught(name):
    kept = check_mutants(name, bound=20_000)
    assert kept >= (0 if name == "length" else 1)


@pytest.mark.slow
@pytest.mark.parametrize("name", ALL)
def test_every_mutant_of_every_example_is_caught(name):
    check_mutants(name, bound=200_000, examples=2000)


@pytest.mark.slow
@pytest.mark.parametrize("name", ALL)
def test_mutants_are_caught_without_exhaustive_search(name):
    # bound 0: random inputs then Hypothesis over every length, then shrinking
    check_mutants(name, bound=0, examples=2000)


def test_mutants_are_caught_by_the_property_search_and_shrunk():
    for name in ("reverse", "parity", "histogram"):
        check_mutants(name, bound=0, examples=500)


# ---------------------------------------------------------------- the command

def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_command_exit_status_and_json(tmp_path, capsys):
    source = str(EXAMPLES / "histogram.rasp")
    assert main(["equiv", source, write(tmp_path, "h.rasp", HIST_B)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("equal:") and "exhaustive: all 1,364 inputs" in out
    broken = HIST_B.replace("q == k", "q != k")
    assert main(["equiv", source, write(tmp_path, "bad.rasp", broken), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)["result"]
    assert report["equal"] is False and report["mode"] == "exhaustive"
    assert report["counterexample"] == {"input": ["a"], "a": [1], "b": [0], "differs_at": [0],
                                        "found_by": "exhaustive", "found_length": 1,
                                        "shrink_rounds": 0}
    assert main(["equiv", source, write(tmp_path, "bad.rasp", broken)]) == 1
    text = capsys.readouterr().out
    assert "different" in text and "counterexample (length 1" in text and 'A:     [1]' in text


def test_command_reports_the_property_mode_and_bound(tmp_path, capsys):
    a, b = write(tmp_path, "a.rasp", LONG_A), write(tmp_path, "b.rasp", LONG_B)
    assert main(["equiv", a, a, "--bound", "1000", "--examples", "200"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("no difference found") and "proven up to length 4" in out
    assert "bound 1,000" in out and "property-based for lengths 5-10" in out
    assert main(["equiv", a, b, "--bound", "1000", "--max-len", "10"]) == 1
    assert "shrunk" in capsys.readouterr().out


@pytest.mark.parametrize("case, code", [
    ("missing", "E252"), ("syntax", "E1"), ("vocab", "V602"), ("bos", "V602"),
    ("maxlen", "V604"), ("novocab", "V601"), ("kinds", "V603"), ("noout", "E260")])
def test_command_errors_are_diagnostics(tmp_path, capsys, case, code):
    a = str(EXAMPLES / "histogram.rasp")
    texts = {
        "syntax": "@vocab {\"a\"}; x = = 1;",
        "vocab": '@vocab {"a", "b"}; @maxlen 5; x = tokens; @output x;',
        "bos": '@vocab {"a", "b", "c", "d"}; @maxlen 5; @bos "a"; x = tokens; @output x;',
        "novocab": '@maxlen 5; x = tokens; @output x;',
        "kinds": '@vocab {"a", "b", "c", "d"}; @maxlen 5; '
                 'y = sigmoid(project(inp=tokens, op=(inp == out))); @output y;',
        "noout": '@vocab {"a", "b", "c", "d"}; @maxlen 5; x = tokens;',
    }
    args = ["equiv", a, str(tmp_path / "nowhere.rasp")]
    if case in texts:
        args = ["equiv", a, write(tmp_path, "b.rasp", texts[case])]
    if case == "maxlen":
        args = ["equiv", a, a, "--max-len", "9"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"error[{code}" in err and "Traceback" not in err
