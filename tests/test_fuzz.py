"""Fuzzing the front end: whatever text comes in, `grammar.elaborate` returns a program or a
non-empty list of coded diagnostics that render, and never raises; `rasp fmt`'s formatter
either lays the text out or refuses it with coded diagnostics; a program that comes back
pretty-prints to text that reads back to the same text, runs on a short valid input or raises a
RaspError with coded diagnostics, and simplifies to a program that prints, reads back and runs
to the same output.

The default run tries about a thousand texts. `pytest -m slow -k long_run` runs many more
(RASP_FUZZ_EXAMPLES, default 100,000; the count of texts tried is printed and, with
RASP_FUZZ_COUNT=FILE, written to FILE).

Text comes from four sources: arbitrary unicode, soups of the language's own tokens, Lark's
grammar (`hypothesis.extra.lark.from_lark`), and valid programs (pretty-printed generated
programs, examples/*.rasp, the packaged libraries) with random character and token mutations.
"""

import os
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st
from hypothesis.extra.lark import from_lark

import lark

import grammar
from grammar.parser import _OPTIONS
from rasp_ir.diagnostics import CODES, RaspError
from grammar.formatter import format_source
from rasp_ir.interpreter import run
from rasp_ir.passes import simplify
from rasp_ir.printer import pretty

from strategies import programs

ROOT = Path(__file__).resolve().parent.parent
FILE = "fuzz.rasp"
_SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                       HealthCheck.data_too_large,
                                                       HealthCheck.filter_too_much])

# ---------------------------------------------------------------- the property


TRIED = [0]          # texts given to check_front_end in this process


def check_front_end(text: str, data=None):
    """The fuzz property for one text (see the module docstring)."""
    TRIED[0] += 1
    if data is not None:
        note(repr(text))
    program, diagnostics = grammar.elaborate(text, FILE)
    for d in diagnostics:
        assert d.code in CODES, d
        assert isinstance(d.render(text), str)
        assert isinstance(d.render(None), str)
    if program is None:
        assert diagnostics, "no program and no diagnostic"
        assert any(d.severity != "warning" for d in diagnostics)
        return None
    assert all(d.severity == "warning" for d in diagnostics)
    _check_formatter(text)
    printed = pretty(program)            # whatever elaborates also prints, and reads back
    assert pretty(grammar.parse(printed, FILE)) == printed
    inputs = _short_input(program, data)
    before = _outputs(program, inputs)
    simpler = simplify(program)
    printed = pretty(simpler)
    assert pretty(grammar.parse(printed, FILE)) == printed
    after = _outputs(simpler, inputs)
    if before is not None and after is not None:
        assert repr(after) == repr(before), (before, after)
    return program


def _outputs(program, inputs):
    """The program's outputs on `inputs`, or None after a RaspError with coded diagnostics."""
    try:
        return [r.output for r in run(program, inputs)]
    except RaspError as exc:
        assert exc.diagnostics and all(c in CODES for c in exc.codes), exc.codes
        exc.render()
        return None


def _check_formatter(text: str):
    """`rasp fmt` on a program that parses: the layout keeps the tokens (format_source checks
    that itself) and is a fixed point."""
    formatted = format_source(text)
    assert format_source(formatted) == formatted


def _short_input(program, data):
    """One short input that fits the program's @vocab, @maxlen and @bos (when it can)."""
    vocab = list(program.vocab) if program.vocab else ["a", "b", "c"]
    length = min(3, program.maxlen or 3)
    if data is not None:
        seq = data.draw(st.lists(st.sampled_from(vocab), min_size=1, max_size=length),
                        label="input")
    else:
        seq = (vocab * length)[:length]
    if program.bos is not None:
        seq = [program.bos] + seq[:max(0, length - 1)]
    return [seq]


# ---------------------------------------------------------------- text sources

KEYWORDS = ["def", "return", "for", "in", "if", "else", "and", "or", "not", "not in", "lambda",
            "load", "True", "False", "None"]
DIRECTIVES = ["@vocab", "@maxlen", "@causal", "@bos", "@output", "@expect", "@attention",
              "@hard_scale", "@compat", "@foo", "@"]
BUILTIN_NAMES = ["tokens", "indices", "length", "select", "aggregate", "selector_width",
                 "indicator", "round", "numerical", "categorical", "range", "zip", "len",
                 "full_s", "sort", "count", "shift", "max", "min", "harden", "sharpen",
                 "project", "softmax", "matrix", "table", "lookup", "exists", "mlp", "draw",
                 "tokens_int", "tokens_str", "k", "q", "inp", "out", "V", "x", "y", "f", "s",
                 "v", "op", "default", "rows", "cols", "values", "prefix_count", "str", "abs"]
OPERATORS = ["+", "-", "*", "/", "%", "^", "**", "==", "!=", "<", "<=", ">", ">=", "=", ",",
             ":", ";", ".", "..", "(", ")", "[", "]", "{", "}", "#", "\\", "'", '"', "->",
             "|", "&", "!", "?", "`", "$"]
LITERALS = ["0", "1", "2", "-1", "9", "64", "1.5", ".5", "1e3", "2.5e-3", "0..9", "1..3",
            '"a"', "'b'", '"hello"', '""', '"\\n"', '"unterminated', "'x\\'", '"é"',
            "99999999999999999999", "1e999", "0.0"]
_SEPARATORS = st.sampled_from([" ", " ", "", "\n", "  ", "\t", "\n\n"])

language_tokens = st.sampled_from(KEYWORDS + DIRECTIVES + BUILTIN_NAMES + OPERATORS + LITERALS) \
    | st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,5}", fullmatch=True) \
    | st.integers(-10, 10 ** 6).map(str)


@st.composite
def token_soup(draw, max_tokens=40):
    """Language tokens in random order, with random separators."""
    parts = draw(st.lists(st.tuples(language_tokens, _SEPARATORS), max_size=max_tokens))
    return "".join(t + s for t, s in parts)


@st.composite
def statement_soup(draw):
    """Statement-shaped soups: `name = …;`, directives, defs, so elaboration gets exercised."""
    pieces = []
    for _ in range(draw(st.integers(1, 6))):
        body = draw(token_soup(max_tokens=8))
        shape = draw(st.sampled_from(["assign", "directive", "def", "output", "expr"]))
        if shape == "assign":
            pieces.append(f"{draw(language_tokens)} = {body};")
        elif shape == "directive":
            pieces.append(f"{draw(st.sampled_from(DIRECTIVES))} {body};")
        elif shape == "def":
            pieces.append(f"def f(a, b) {{ {body}; return {draw(token_soup(max_tokens=4))}; }}")
        elif shape == "output":
            pieces.append(f"@output {body};")
        else:
            pieces.append(f"{body};")
    return "\n".join(pieces)


CALLABLE = ["select", "aggregate", "selector_width", "indicator", "round", "numerical",
            "categorical", "abs", "str", "int", "float", "bool", "len", "range", "zip", "draw",
            "harden", "sharpen", "exists", "lookup", "mlp", "project", "softmax", "sigmoid",
            "matrix", "table", "has_focus", "count", "contains", "max", "min", "average",
            "load_from_location", "shift", "mark_last_instance", "select_from_first", "sort",
            "select_next_identical", "prefix_count", "f", "g", "undefined_fn"]
SOURCES = ["tokens", "indices", "length", "full_s", "tokens_int", "tokens_str", "tokens_float",
           "tokens_bool", "pos", "k", "q", "inp", "out", "V", "nothing_here"]
KEYWORD_ARGS = ["k", "q", "op", "s", "v", "sel", "values", "default", "keys", "queries", "inp",
                "x", "n", "value", "threshold", "table", "rows", "cols", "W_in", "b_in",
                "W_out", "b_out", "name", "input", "predicate", "sop", "bogus"]
_COMPS = ["==", "!=", "<", "<=", ">", ">="]
_BINARY = ["+", "-", "*", "/", "%", "^", "**", "and", "or", "in", "not in"] + _COMPS


@st.composite
def matrix_text(draw):
    """A `matrix(...)` literal whose shape may or may not fit where it is used."""
    labels = st.lists(st.sampled_from(['"a"', '"b"', '"c"', "0", "1", "2", "3", "True"]),
                      min_size=1, max_size=4, unique=True)
    rows = draw(labels)
    cols = draw(st.none() | labels)
    width = len(cols) if cols is not None else 0
    if draw(st.integers(0, 5)) == 0:
        width += draw(st.sampled_from([-1, 1]))
    number = st.sampled_from(["0", "1", "-1.5", "2", "0.25"])
    if cols is None:
        values = "[" + ", ".join(draw(number) for _ in rows) + "]"
        return f"matrix(rows=[{', '.join(rows)}], values={values})"
    values = "[" + ", ".join("[" + ", ".join(draw(number) for _ in range(max(0, width))) + "]"
                             for _ in rows) + "]"
    return f"matrix(rows=[{', '.join(rows)}], cols=[{', '.join(cols)}], values={values})"


@st.composite
def surface_expr(draw, depth, names):
    """A syntactically valid expression of the surface language (fully parenthesised),
    semantically anything: calls with odd arguments, meta values where s-ops go, …"""
    atoms = st.one_of(
        st.sampled_from(SOURCES + names), st.integers(-3, 12).map(str),
        st.sampled_from(["0.5", "1e3", "2.5", ".25", "1e-3", "True", "False", "None", '"a"',
                         '"b"', '"ab"', "'c'", '""', "0..3"]), matrix_text(),
        st.sampled_from(["select(tokens, tokens, ==)", "select(indices, indices, <=)",
                         "aggregate(select(tokens, tokens, ==) + select(indices, indices, <), "
                         "tokens)", "(lambda k, q: k == q)", "(inp == out)", "(k < q + 1)",
                         "project(inp=tokens, op=(inp == out))", "softmax(project(op=(out == "
                         '"a")))']))
    if depth <= 0 or draw(st.integers(0, 4)) == 0:
        return draw(atoms)
    sub = surface_expr(depth - 1, names)
    kind = draw(st.integers(0, 11))
    if kind == 0:
        return f"({draw(st.sampled_from(['-', '+', 'not ']))}{draw(sub)})"
    if kind == 1:
        return f"({draw(sub)} {draw(st.sampled_from(_BINARY))} {draw(sub)})"
    if kind == 2:
        return f"({draw(sub)} if {draw(sub)} else {draw(sub)})"
    if kind in (3, 4, 5):
        args = []
        for _ in range(draw(st.integers(0, 3))):
            args.append(draw(st.one_of(sub, st.sampled_from(_COMPS))))
        for key in draw(st.lists(st.sampled_from(KEYWORD_ARGS), max_size=3, unique=True)):
            args.append(f"{key}={draw(sub)}")
        callee = draw(st.sampled_from(CALLABLE + names)) if kind != 5 else f"({draw(sub)})"
        return f"{callee}({', '.join(args)})"
    if kind == 6:
        return f"{draw(sub)}[{draw(sub)}]"
    if kind == 7:
        return "[" + ", ".join(draw(st.lists(sub, max_size=3))) + "]"
    if kind == 8:
        pairs = draw(st.lists(st.tuples(sub, sub), max_size=3))
        return "{" + ", ".join(f"{a}: {b}" for a, b in pairs) + "}"
    if kind == 9:
        return "{" + ", ".join(draw(st.lists(sub, min_size=1, max_size=3))) + "}"
    if kind == 10:
        return f"[{draw(sub)} for {draw(st.sampled_from(['i', 'x', 'k']))} in {draw(sub)}]"
    return f"(lambda {draw(st.sampled_from(['k, q', 'x', 'inp, out', 'a, b']))}: {draw(sub)})"


@st.composite
def surface_programs(draw):
    """Syntactically valid programs of random statements: elaboration and typing get fuzzed
    rather than the parser."""
    lines = []
    if draw(st.integers(0, 3)):
        vocab = draw(st.sampled_from(['{"a", "b", "c"}', '{"a", "b", "c"}', "{0, 1, 2, 3}",
                                      '"abc"', "{}",
                                      "V = {1, 2}", '{"a", 1}', "[1, 2]", "3"]))
        lines.append(f"@vocab {vocab};")
    if draw(st.integers(0, 3)):
        maxlen = draw(st.sampled_from(["4", "8", "0", "-1", "2.5", '"x"']))
        lines.append(f"@maxlen {maxlen};")
    for directive in draw(st.lists(st.sampled_from(
            ["@causal;", '@bos "a";', "@bos 0;", '@attention "softmax";', '@attention "x";',
             "@hard_scale 100;", '@compat "rasp0.1";', '@compat "x";', "@hard_scale tokens;"]),
            max_size=2)):
        lines.append(directive)
    names = []
    for i in range(draw(st.integers(1, 6))):
        shape = draw(st.integers(0, 9))
        expr = draw(surface_expr(3, names))
        if shape == 0:
            names.append("f")
            body = draw(surface_expr(2, names + ["a", "b"]))
            lines.append(f"def f(a, b) {{ t = {body}; return {draw(surface_expr(2, ['t', 'a']))}; }}")
        elif shape == 1:
            lines.append(f"for i in {expr} {{ z{i} = {draw(surface_expr(2, names + ['i']))}; }}")
            names.append(f"z{i}")
        elif shape == 2:
            lines.append(f"@output {expr};")
        elif shape == 3:
            lines.append(f"@expect {draw(st.sampled_from(names or ['tokens']))}({expr}) == "
                         f"{draw(surface_expr(1, names))};")
        elif shape == 4:
            lines.append(f"{expr};")
        elif shape == 5:
            lines.append('load "rasplib";' if draw(st.booleans()) else 'load "nowhere";')
        else:
            name = f"x{i}"
            lines.append(f"{name} = {expr};")
            names.append(name)
    if names and draw(st.booleans()):
        lines.append(f"@output {draw(st.sampled_from(names))};")
    return "\n".join(lines)


def _seed_files() -> list[str]:
    files = sorted((ROOT / "examples").glob("*.rasp")) + \
        sorted((ROOT / "rasp_ir" / "lib").glob("*.rasp"))
    texts = []
    for path in files:
        try:
            texts.append(path.read_text(encoding="utf-8"))
        except OSError:
            pass
    return texts


SEEDS = _seed_files()
_TOKEN = re.compile(r"@?[A-Za-z_][A-Za-z0-9_]*|\d+(?:\.\d+)?|\"(?:[^\"\\\n]|\\.)*\"|[=!<>]=|\S")


@st.composite
def mutated(draw, base):
    """`base` with 1..4 random edits: characters or whole tokens deleted, inserted,
    duplicated or replaced, or a slice moved."""
    text = base
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["delete_char", "insert_char", "delete_token",
                                     "insert_token", "duplicate", "replace_token", "move",
                                     "swap_name", "swap_operator", "swap_number"]))
        spans = [m.span() for m in _TOKEN.finditer(text)]
        if kind.startswith("swap"):
            pattern = {"swap_name": r"[A-Za-z_]\w*", "swap_operator": r"[-+*/%^<>=!]=?",
                       "swap_number": r"\d+(?:\.\d+)?"}[kind]
            same = [(a, b) for a, b in spans if re.fullmatch(pattern, text[a:b])]
            if not same:
                continue
            a, b = draw(st.sampled_from(same))
            if kind == "swap_name":
                others = sorted({text[x:y] for x, y in same} | set(BUILTIN_NAMES))
                new = draw(st.sampled_from(others))
            elif kind == "swap_operator":
                new = draw(st.sampled_from(["+", "-", "*", "/", "%", "^", "==", "!=", "<",
                                            "<=", ">", ">="]))
            else:
                new = draw(st.sampled_from(["0", "1", "2", "3", "-1", "0.5", "7", "100"]))
            text = text[:a] + new + text[b:]
            continue
        if kind.endswith("token") and spans:
            start, end = draw(st.sampled_from(spans))
        else:
            start = draw(st.integers(0, len(text)))
            end = min(len(text), start + draw(st.integers(1, 12)))
        if kind == "delete_char":
            text = text[:start] + text[start + 1:]
        elif kind == "insert_char":
            ch = draw(st.characters(codec="utf-8") | st.sampled_from(list("()[]{};,=\"'#@.\n")))
            text = text[:start] + ch + text[start:]
        elif kind == "delete_token":
            text = text[:start] + text[end:]
        elif kind == "insert_token":
            text = text[:start] + draw(language_tokens) + " " + text[start:]
        elif kind == "replace_token":
            text = text[:start] + draw(language_tokens) + text[end:]
        elif kind == "duplicate":
            text = text[:end] + text[start:end] + text[end:]
        else:
            piece, rest = text[start:end], text[:start] + text[end:]
            where = draw(st.integers(0, len(rest)))
            text = rest[:where] + piece + rest[where:]
    return text


def valid_programs():
    sources = [programs(max_bindings=5).map(pretty)]
    if SEEDS:
        sources.append(st.sampled_from(SEEDS))
    return st.one_of(sources)


mutated_programs = valid_programs().flatmap(mutated)
# built from the grammar file: from_lark needs the grammar, which tables read back from the
# on-disk cache (grammar/parser.py) do not keep
grammar_texts = from_lark(lark.Lark.open_from_package("grammar", "rasp.lark", ("",), **_OPTIONS),
                          start="start")

# ---------------------------------------------------------------- tests


@settings(max_examples=150, **_SETTINGS)
@given(st.text(max_size=200), st.data())
def test_arbitrary_text(text, data):
    check_front_end(text, data)


@settings(max_examples=150, **_SETTINGS)
@given(st.one_of(token_soup(), statement_soup()), st.data())
def test_token_soup(text, data):
    check_front_end(text, data)


@settings(max_examples=100, **_SETTINGS)
@given(grammar_texts, st.data())
def test_grammar_generated_text(text, data):
    check_front_end(text, data)


@settings(max_examples=250, **_SETTINGS)
@given(surface_programs(), st.data())
def test_surface_programs(text, data):
    check_front_end(text, data)


@settings(max_examples=250, **_SETTINGS)
@given(mutated_programs, st.data())
def test_mutated_programs(text, data):
    check_front_end(text, data)


# regressions: each of these once crashed the front end, the printer or the interpreter
EDGE_TEXTS = [
    "", ";", "@vocab {};\nx = tokens == 1;\n@output x;", "x = 9 ^ 0.5;",
    "@vocab 3;", "x = zip(1, 2);", "x = [[1]] in indices;", "x = None and 8;",
    'x = "\\x4";', 'x = "\\N{nope}";', 'load "\\x4";', 'x = "\\q";',
    "x = 2.0 ^ 10000;", "x = 10 ^ 400 / 3;", "x = 9 ^ 9 ^ 9;", "x = round(1e999);",
    "x = tokens == 1e999;\n@output x;", "x = tokens in [0 * 1e999];\n@output x;",
    "@maxlen 99999999999;\nx = indices;\n@output x;", '@hard_scale "a";', "@hard_scale 1e999;",
    "x = draw(tokens, [[1]]);", "x = tokens([[1]]);",
    '@vocab {"a", "b"};\n@expect tokens("ab") == [1, len];',
    "x = tokens not in [len, 1];\n@output x;", "x = {len: 1}[tokens];\n@output x;",
    '@vocab {"a", "b"};\nx = aggregate(select(tokens, tokens, ==), tokens, '
    'matrix(rows=["a"], values=[1]));',
    "x = matrix(rows=[len], values=[1]);",
    '@vocab {"a", "b"};\n@maxlen 3;\nl = select(k=False, op=True);\n'
    "x = aggregate(l, numerical(indices));\n@output x;",
    '@vocab {"a","b"};\nl = project(inp=tokens, op=matrix(rows=["a","b"], values=[1, 2]));\n'
    "@output l;",
    '@vocab {"a","b"};\nl = project(inp=tokens, op=matrix(rows=["a"], cols=["a","b"], '
    "values=[[1, 2]]));\n@output l;",
    '@vocab {"a","b"};\nl = project(op=matrix(rows=["a", "b"], cols=["a","b"], '
    "values=[[1, 2], [3, 4]]));\n@output l;",
    '@vocab {"a","b"};\n@maxlen 4;\nv = aggregate(select(tokens, tokens, ==) + '
    "select(indices, indices, <), tokens);\nm = mlp(v, W_in=matrix(rows=[0], cols=[0], "
    "values=[[1]]), b_in=matrix(rows=[0], values=[1]), W_out=matrix(rows=[0], cols=[\"x\"], "
    'values=[[1]]), b_out=matrix(rows=["x"], values=[1]));\n@output m;',
    '@vocab {"a","b"};\nv = exists(tokens, "zz");\n@output v;',
    "@bos{};@maxlen 1;A=0;tokens_str;@output indices;",     # the long run's first find
    "@bos [1];\nx = tokens;\n@output x;", "@bos None;\nx = tokens;\n@output x;",
]


@pytest.mark.parametrize("text", EDGE_TEXTS)
def test_edge_texts(text):
    check_front_end(text)


ALL_SOURCES = st.one_of(st.text(max_size=400), token_soup(80), statement_soup(), grammar_texts,
                        surface_programs(), mutated_programs)


@pytest.mark.slow
@settings(max_examples=3000, **_SETTINGS)
@given(ALL_SOURCES, st.data())
def test_front_end_thorough(text, data):
    check_front_end(text, data)


LONG_RUN = int(os.environ.get("RASP_FUZZ_EXAMPLES", "100000"))


@pytest.mark.slow
def test_front_end_long_run():
    """RASP_FUZZ_EXAMPLES texts from every source (the issue asks for at least 100,000 once);
    the first text that breaks the property fails the test, shrunk."""
    TRIED[0] = 0

    @settings(max_examples=LONG_RUN, database=None, **_SETTINGS)
    @given(ALL_SOURCES, st.data())
    def long_run(text, data):
        check_front_end(text, data)
        if TRIED[0] % 1000 == 0:
            # a run of hours says how far it got, so that one cut short still reports a count
            # (Hypothesis stops at the first failure, so a running count is one of passes)
            print(f"fuzz: {TRIED[0]} texts tried so far", flush=True)
            if os.environ.get("RASP_FUZZ_COUNT"):
                Path(os.environ["RASP_FUZZ_COUNT"]).write_text(f"{TRIED[0]} so far\n")

    try:
        long_run()
    finally:
        print(f"\nfuzz: {TRIED[0]} texts tried (RASP_FUZZ_EXAMPLES={LONG_RUN})")
        if os.environ.get("RASP_FUZZ_COUNT"):
            Path(os.environ["RASP_FUZZ_COUNT"]).write_text(f"{TRIED[0]}\n")
