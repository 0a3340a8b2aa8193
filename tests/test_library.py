"""The default library (rasp_ir/lib/rasplib.rasp), paper_examples.rasp and long_addition.rasp
against independent plain-Python reference implementations, on Hypothesis-generated inputs."""

from __future__ import annotations

import json
import math
import operator
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from grammar import Session

BOS = "§"
FEW = settings(max_examples=25, deadline=None)

words = st.text(alphabet="abc", min_size=1, max_size=12)
wide_words = st.text(alphabet="abcdefgh", min_size=1, max_size=12)
numbers = st.lists(st.integers(min_value=0, max_value=5), min_size=1, max_size=12)

OPS = {"==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le,
       ">": operator.gt, ">=": operator.ge}


def literal(seq) -> str:
    """A .rasp literal for an input sequence: a string or a list of ints."""
    if isinstance(seq, str):
        return json.dumps(seq, ensure_ascii=False)
    return "[" + ", ".join(repr(x) for x in seq) + "]"


class Programs:
    """One session holding named programs; `apply` runs one of them on an input."""

    def __init__(self, *statements: str):
        self.session = Session()
        for stmt in statements:
            self.session.run(stmt)

    def apply(self, name: str, seq):
        (value,) = self.session.run(f"{name}({literal(seq)});")
        return value


@pytest.fixture(scope="module")
def lib():
    return Programs(
        "same_width = selector_width(select(tokens, tokens, ==));",
        "less_width = selector_width(select(tokens, tokens, <));",
        "index_width = selector_width(select(indices, indices, <=));",
        "focus_less = has_focus(select(tokens, tokens, <));",
        "focus_a = has_focus(select(tokens, \"a\", ==));",
        "count_a = count(tokens, \"a\");",
        "contains_b = contains(tokens, \"b\");",
        "max_ti = max(tokens, indices);",
        "min_ti = min(tokens, indices);",
        "average_t = average(tokens);",
        "load_reverse = load_from_location(tokens, length - indices - 1);",
        "load_self = load_from_location(tokens + 100, tokens % length);",
        "load_next = load_from_location(tokens, indices + 1);",
        "last_a = mark_last_instance(tokens, \"a\");",
        "first_a = mark_first_instance(tokens, \"a\");",
        "from_last_a = select_from_last(tokens, \"a\");",
        "from_first_a = select_from_first(tokens, \"a\");",
        "sorted_t = sort(tokens, tokens);",
        "argsort_t = sort(indices, tokens);",
        "sorted_desc = sort(tokens, -indices);",
        "next_same = select_next_identical(tokens);",
        "next_same_index = aggregate(select_next_identical(tokens), indices, -1);",
        "prefix_a = prefix_count(tokens == \"a\");",
        *(f"shift_{n} = shift(tokens, {n}, \"_\");" for n in range(4)),
        *(f"sel_{i} = select(tokens, tokens, {op});" for i, op in enumerate(OPS)),
        *(f"width_{i} = selector_width(select(tokens, tokens, {op}));"
          for i, op in enumerate(OPS)),
    )


# ---------------------------------------------------------------- references

def ref_width(seq, op):
    return [sum(op(k, q) for k in seq) for q in seq]


def ref_last(seq, value):
    return max((i for i, t in enumerate(seq) if t == value), default=None)


def ref_first(seq, value):
    return min((i for i, t in enumerate(seq) if t == value), default=None)


def ref_sort_order(keys):
    return sorted(range(len(keys)), key=lambda i: (keys[i], i))


def ref_next_identical(seq, q):
    return next((k for k in range(q + 1, len(seq)) if seq[k] == seq[q]), None)


# ---------------------------------------------------------------- default library

@FEW
@given(wide_words)
def test_length_and_full_s(lib, s):
    assert lib.apply("length", s) == [len(s)] * len(s)
    assert lib.apply("full_s", s) == [[True] * len(s) for _ in s]


@FEW
@given(wide_words)
def test_selector_width(lib, s):
    for i, op in enumerate(OPS.values()):
        assert lib.apply(f"width_{i}", s) == ref_width(s, op)
        assert lib.apply(f"sel_{i}", s) == [[op(k, q) for k in s] for q in s]
    assert lib.apply("same_width", s) == [Counter(s)[t] for t in s]
    assert lib.apply("index_width", s) == [i + 1 for i in range(len(s))]


@FEW
@given(words)
def test_has_focus(lib, s):
    assert lib.apply("focus_less", s) == [any(k < q for k in s) for q in s]
    assert lib.apply("focus_a", s) == ["a" in s] * len(s)


@FEW
@given(words)
def test_count_and_contains(lib, s):
    assert lib.apply("count_a", s) == [s.count("a")] * len(s)
    assert lib.apply("contains_b", s) == ["b" in s] * len(s)


@FEW
@given(numbers)
def test_max_min(lib, xs):
    assert lib.apply("max_ti", xs) == [max(x, i) for i, x in enumerate(xs)]
    assert lib.apply("min_ti", xs) == [min(x, i) for i, x in enumerate(xs)]


@FEW
@given(numbers)
def test_average(lib, xs):
    mean = sum(xs) / len(xs)
    assert all(math.isclose(v, mean, abs_tol=1e-9) for v in lib.apply("average_t", xs))


@FEW
@given(words, numbers)
def test_load_from_location(lib, s, xs):
    assert lib.apply("load_reverse", s) == list(reversed(s))
    n = len(xs)
    assert lib.apply("load_self", xs) == [xs[x % n] + 100 for x in xs]
    assert lib.apply("load_next", s) == [s[i + 1] if i + 1 < len(s) else None
                                         for i in range(len(s))]


@FEW
@given(words)
def test_shift(lib, s):
    for n in range(4):
        assert lib.apply(f"shift_{n}", s) == [s[i - n] if i >= n else "_"
                                              for i in range(len(s))]


@FEW
@given(words)
def test_mark_instances(lib, s):
    last, first = ref_last(s, "a"), ref_first(s, "a")
    assert lib.apply("last_a", s) == [i == last for i in range(len(s))]
    assert lib.apply("first_a", s) == [i == first for i in range(len(s))]


@FEW
@given(words)
def test_select_from_last_and_first(lib, s):
    last, first = ref_last(s, "a"), ref_first(s, "a")
    assert lib.apply("from_last_a", s) == [[k == last for k in range(len(s))] for _ in s]
    assert lib.apply("from_first_a", s) == [[k == first for k in range(len(s))] for _ in s]


@FEW
@given(wide_words)
def test_sort(lib, s):
    assert lib.apply("sorted_t", s) == sorted(s)
    assert lib.apply("argsort_t", s) == ref_sort_order(s)
    assert lib.apply("sorted_desc", s) == list(reversed(s))


@FEW
@given(numbers)
def test_sort_numbers(lib, xs):
    assert lib.apply("sorted_t", xs) == sorted(xs)
    assert lib.apply("argsort_t", xs) == ref_sort_order(xs)


@FEW
@given(words)
def test_select_next_identical(lib, s):
    nxt = [ref_next_identical(s, q) for q in range(len(s))]
    assert lib.apply("next_same", s) == [[k == nxt[q] for k in range(len(s))]
                                         for q in range(len(s))]
    assert lib.apply("next_same_index", s) == [-1 if k is None else k for k in nxt]


@FEW
@given(words)
def test_prefix_count(lib, s):
    assert lib.apply("prefix_a", s) == [s[:i + 1].count("a") for i in range(len(s))]


def test_library_examples(lib):
    """A few fixed cases, readable as documentation."""
    assert lib.apply("same_width", "hello") == [1, 1, 2, 2, 1]
    assert lib.apply("sorted_t", "hello") == list("ehllo")
    assert lib.apply("shift_1", "abcd") == list("_abc")
    assert lib.apply("next_same_index", "abcab") == [3, 4, -1, -1, -1]
    assert lib.apply("prefix_a", "abaa") == [1, 1, 2, 3]


# ---------------------------------------------------------------- paper examples

@pytest.fixture(scope="module")
def paper():
    return Programs('load "paper_examples";')


def ref_hist2(s):
    counts = Counter(s)
    return [sum(1 for c in counts.values() if c == counts[t]) for t in s]


def ref_most_freq(s):
    counts = Counter(s)
    order = sorted(counts, key=lambda t: (-counts[t], s.index(t)))
    return order + [BOS] * (len(s) - len(order))


def ref_dyck(s, pairs):
    closing = {p[1]: p[0] for p in pairs}
    openers = {p[0] for p in pairs}
    out, stack, failed = [], [], False
    for t in s:
        if not failed:
            if t in openers:
                stack.append(t)
            elif t in closing:
                if not stack or stack.pop() != closing[t]:
                    failed = True
        out.append("F" if failed else ("T" if not stack else "P"))
    return out


@pytest.mark.parametrize("name, inp, expected", [
    ("hist_bos", "§aba", [0, 2, 1, 2]),
    ("hist_nobos", "aba", [2, 1, 2]),
    ("hist2_bos", "§abbc", [0, 2, 1, 1, 2]),
    ("sort_bos", "§cba", list("§abc")),
    ("sort_by_most_freq", "§abbccddd", list("§dbca§§§§")),
    ("dyck1_ptf", "()())", list("PTPTF")),
    ("dyck2_ptf", "({})", list("PPPT")),
    ("dyck2_ptf", "({)}", list("PPFF")),
    ("dyck3_ptf", "([)]", list("PPFF")),
    ("reverse", "hello", list("olleh")),
    ("reverse", "abc", list("cba")),
    ("hist_bos", "§", [0]),
    ("sort_bos", "§", ["§"]),
    ("sort_by_most_freq", "§", ["§"]),
    ("hist2_bos", "§", [0]),
    ("dyck1_ptf", ")(", list("FF")),
])
def test_paper_examples_fixed(paper, name, inp, expected):
    assert paper.apply(name, inp) == expected


@FEW
@given(wide_words)
def test_paper_histograms(paper, s):
    assert paper.apply("hist_bos", BOS + s) == [0] + [Counter(s)[t] for t in s]
    assert paper.apply("hist_nobos", s) == [Counter(s)[t] for t in s]
    assert paper.apply("hist2_bos", BOS + s) == [0] + ref_hist2(s)


@FEW
@given(wide_words)
def test_paper_sorts(paper, s):
    assert paper.apply("sort_bos", BOS + s) == [BOS] + sorted(s)
    assert paper.apply("sort_by_most_freq", BOS + s) == [BOS] + ref_most_freq(s)
    assert paper.apply("reverse", s) == list(reversed(s))


@FEW
@given(st.text(alphabet="()", min_size=1, max_size=12))
def test_paper_dyck1(paper, s):
    assert paper.apply("dyck1_ptf", s) == ref_dyck(s, ["()"])


@FEW
@given(st.text(alphabet="(){}", min_size=1, max_size=12))
def test_paper_dyck2(paper, s):
    assert paper.apply("dyck2_ptf", s) == ref_dyck(s, ["()", "{}"])


@FEW
@given(st.text(alphabet="(){}[]", min_size=1, max_size=12))
def test_paper_dyck3(paper, s):
    assert paper.apply("dyck3_ptf", s) == ref_dyck(s, ["()", "{}", "[]"])


@FEW
@given(st.text(alphabet="()", min_size=1, max_size=6).map(lambda t: "(" * len(t) + t))
def test_paper_dyck_deep_prefixes(paper, s):
    """Openers first, then a mix: long runs at the same depth."""
    assert paper.apply("dyck1_ptf", s) == ref_dyck(s, ["()"])
    assert paper.apply("dyck2_ptf", s) == ref_dyck(s, ["()", "{}"])


def test_dyckk_ptf_is_generic():
    programs = Programs('load "paper_examples";', 'd4 = dyckk_ptf(["()", "<>", "ab", "xy"]);')
    for s in ["(<ab>)", "(<a>b)", "xy(", "y", "<xa"]:
        assert programs.apply("d4", s) == ref_dyck(s, ["()", "<>", "ab", "xy"]), s


# ---------------------------------------------------------------- long addition

@pytest.fixture(scope="module")
def adder():
    return Programs('load "long_addition";')


def ref_longsum(text):
    a, b = text.split("+")
    total = str(int(a) + int(b)).rjust(len(text), "0")
    return [int(d) for d in total]


def test_longsum_published(adder):
    assert adder.apply("longsum", "15+87") == [0, 0, 1, 0, 2]


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 99999), st.integers(0, 99999))
def test_longsum_random(adder, a, b):
    text = f"{a}+{b}"
    out = adder.apply("longsum", text)
    assert out == ref_longsum(text)
    assert int("".join(map(str, out))) == a + b


@FEW
@given(st.text(alphabet="0123456789", min_size=1, max_size=5),
       st.text(alphabet="09", min_size=1, max_size=5))
def test_longsum_leading_zeros_and_nines(adder, a, b):
    """Leading zeros and long runs of 9s (carry chains)."""
    text = f"{a}+{b}"
    assert adder.apply("longsum", text) == ref_longsum(text)


@pytest.mark.parametrize("name", ["rasplib", "paper_examples", "long_addition"])
def test_each_library_file_reads_as_a_program(name):
    """`rasp check` and `rasp fmt` read the packaged library files themselves; the default
    library's file defines `full_s` and `length`, names no other program may bind."""
    import grammar
    from grammar.library import packaged_library_dir
    from rasp_ir.printer import pretty
    path = packaged_library_dir() / f"{name}.rasp"
    program = grammar.load(path)
    assert grammar.parse(pretty(program), str(path)) == program
    if name == "rasplib":
        assert {b.name for b in program.bindings} >= {"full_s", "length"}
