"""Every program in examples/ is executable documentation: it parses, its @expect lines hold,
it prints back to itself, and on random inputs it agrees with a plain-Python statement of its
task (written independently of the program)."""

from __future__ import annotations

import re
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import grammar
from rasp_ir.expects import check_expects, same
from rasp_ir.interpreter import run
from rasp_ir.printer import pretty

from conftest import EXAMPLES

FILES = sorted(EXAMPLES.glob("*.rasp"))
NAMES = [f.stem for f in FILES]

_programs: dict = {}


def program(name):
    if name not in _programs:
        _programs[name] = grammar.load(EXAMPLES / f"{name}.rasp")
    return _programs[name]


# ---------------------------------------------------------------- every file

def test_the_examples_are_there():
    expected = {"reverse", "histogram", "sort", "sort_unique", "most_frequent", "dyck1", "dyck2",
                "parity", "induction", "majority", "frac_prevs", "length", "pair_balance",
                "shuffle_dyck", "shuffle_dyck3", "count", "drasp_copy"}
    assert expected <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_expectations_hold(name):
    p = program(name)
    assert p.output is not None, "every example declares its @output"
    assert p.vocab is not None and p.maxlen is not None, "every example has @vocab and @maxlen"
    assert len(p.expects) >= 1
    assert check_expects(p) == []


@pytest.mark.parametrize("name", NAMES)
def test_pretty_round_trips(name):
    p = program(name)
    text = pretty(p)
    again = grammar.parse(text)
    assert again == p
    assert pretty(again) == text


@pytest.mark.parametrize("name", NAMES)
def test_no_warnings(name):
    text = (EXAMPLES / f"{name}.rasp").read_text()
    _, diagnostics = grammar.elaborate(text, str(EXAMPLES / f"{name}.rasp"))
    assert [d.code for d in diagnostics] == []


# ---------------------------------------------------------------- references in plain Python

def prefix_shares(seq, wanted):
    return [sum(t == wanted for t in seq[:i + 1]) / (i + 1) for i in range(len(seq))]


def ptf(seq, pairs):
    """Dyck-k per prefix: T balanced, P completable, F not completable (a stack machine)."""
    closer_of = {p[0]: p[1] for p in pairs}
    stack, failed, out = [], False, []
    for t in seq:
        if not failed:
            if t in closer_of:
                stack.append(closer_of[t])
            elif stack and stack[-1] == t:
                stack.pop()
            else:
                failed = True
        out.append("F" if failed else ("P" if stack else "T"))
    return out


def shuffle_dyck(seq, pairs):
    ok = True
    for opener, closer in pairs:
        depth = 0
        for t in seq:
            depth += (t == opener) - (t == closer)
            ok = ok and depth >= 0
        ok = ok and depth == 0
    return [int(ok)] * len(seq)


def induction(seq):
    out = []
    for i, t in enumerate(seq):
        earlier = [j for j in range(i) if seq[j] == t]
        out.append(seq[earlier[-1] + 1] if earlier else None)
    return out


def majority(seq):
    out = []
    for i in range(len(seq)):
        c = Counter(seq[:i + 1])
        out.append("1" if c["1"] > c["0"] else "0" if c["0"] > c["1"] else "=")
    return out


def by_frequency(seq):
    counts = Counter(seq)
    return sorted(seq, key=lambda t: -counts[t])      # Python's sort is stable


REFERENCES = {
    "reverse": lambda s: s[::-1],
    "histogram": lambda s: [s.count(t) for t in s],
    "length": lambda s: [len(s)] * len(s),
    "count": lambda s: [s.count("a")] * len(s),
    "frac_prevs": lambda s: prefix_shares(s, "l"),
    "pair_balance": lambda s: [a - b for a, b in zip(prefix_shares(s, "("),
                                                     prefix_shares(s, ")"))],
    "sort": sorted,
    "sort_unique": sorted,
    "most_frequent": by_frequency,
    "dyck1": lambda s: ptf(s, ["()"]),
    "dyck2": lambda s: ptf(s, ["()", "{}"]),
    "shuffle_dyck": lambda s: shuffle_dyck(s, ["()", "{}"]),
    "shuffle_dyck3": lambda s: shuffle_dyck(s, ["()", "{}", "[]"]),
    "parity": lambda s: [s[:i + 1].count("1") % 2 for i in range(len(s))],
    "majority": majority,
    "induction": induction,
}


def sequences(p, unique=False):
    """Token lists over the program's vocabulary, of every length 1..maxlen."""
    vocab = sorted(p.vocab, key=repr)
    size = min(p.maxlen, len(vocab)) if unique else p.maxlen
    return st.lists(st.sampled_from(vocab), min_size=1, max_size=size, unique=unique)


def check_against_reference(name, batch):
    p = program(name)
    results = run(p, batch)        # one batched run: inputs of mixed lengths
    for seq, result in zip(batch, results):
        expected = REFERENCES[name](list(seq))
        assert same(result.output, list(expected)), (seq, result.output, expected)


def _property(name, unique=False):
    @settings(max_examples=25, deadline=None)
    @given(st.lists(sequences(program(name), unique=unique), min_size=1, max_size=8))
    def prop(batch):
        check_against_reference(name, batch)
    return prop


@pytest.mark.parametrize("name", sorted(set(REFERENCES) - {"sort_unique"}))
def test_agrees_with_reference(name):
    _property(name)()


def test_sort_unique_agrees_with_reference_on_distinct_keys():
    # the precondition of make_sort_unique: no two keys are equal
    _property("sort_unique", unique=True)()


def test_sort_unique_by_position_reverses_any_input():
    p = program("sort_unique")
    backwards = p.binding("backwards").value

    @settings(max_examples=25, deadline=None)
    @given(st.lists(sequences(p), min_size=1, max_size=8))
    def prop(batch):
        for seq, r in zip(batch, run(p, batch, node=backwards)):
            assert r.output == seq[::-1]
    prop()


def test_frac_prevs_of_open_brackets():
    p = program("frac_prevs")
    frac_open = p.binding("frac_open").value

    @settings(max_examples=25, deadline=None)
    @given(st.lists(sequences(p), min_size=1, max_size=8))
    def prop(batch):
        for seq, r in zip(batch, run(p, batch, node=frac_open)):
            assert same(r.output, prefix_shares(seq, "("))
    prop()


LETTERS = ["a", "b", "c", "d"]


def copy_prediction(x, y):
    """Next-token targets of unique copy on "<bos> x <sep> y": nothing over BOS and x, then
    x's next token after <sep> and after each token of y, then <eos>."""
    out = ["<bos>"] * (1 + len(x))
    target = list(x) + ["<eos>"]
    out += target[:len(y) + 1]
    return out


@settings(max_examples=40, deadline=None)
@given(st.lists(st.permutations(LETTERS).flatmap(
    lambda perm: st.integers(0, 4).flatmap(
        lambda n: st.integers(0, n).map(lambda m: (perm[:n], perm[:m])))),
    min_size=1, max_size=8))
def test_drasp_copy_predicts_the_next_token(cases):
    p = program("drasp_copy")
    batch = [["<bos>", *x, "<sep>", *y] for x, y in cases]
    for (x, y), r in zip(cases, run(p, batch)):
        assert r.output == copy_prediction(x, y), (x, y)
        for row in r.logits:               # a distribution over the vocabulary per position
            assert len(row) == len(p.vocab) and abs(sum(row) - 1) < 1e-9


# ---------------------------------------------------------------- beyond @maxlen

def with_maxlen(name, maxlen):
    text = (EXAMPLES / f"{name}.rasp").read_text()
    text, n = re.subn(r"@maxlen \d+;", f"@maxlen {maxlen};", text)
    assert n == 1
    return grammar.parse(text)


@pytest.mark.parametrize("name, text, oracle", [
    # the RASP 0.1 interpreter's published outputs (shared/conformance, cases T12 and T13)
    ("dyck1", "()(()())(((())(()(()))))((())((()()))(()))))(())((",
     "PTPPPPPTPPPPPPPPPPPPPPPTPPPPPPPPPPPPPPPPPTFFFFFFFF"),
    ("dyck2", "{{({(){}()})}({}){}{}}{(({}(){}))}{}(){}({}(){()(){}}){)()}",
     "PPPPPPPPPPPPPPPPPPPPPTPPPPPPPPPPPTPTPTPTPPPPPPPPPPPPPTPFFFF"),
])
def test_dyck_programs_do_not_depend_on_maxlen(name, text, oracle):
    p = with_maxlen(name, 64)
    (result,) = run(p, [text])
    assert "".join(result.output) == oracle == "".join(REFERENCES[name](list(text)))
