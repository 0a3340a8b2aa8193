"""The replacement step's rounding (extractor/decompile/replace.py, Replacer.round_tables):
each table left is rounded to integers, else to one decimal, where the judge keeps it."""

import attrs
import numpy as np

import grammar
from extractor.decompile.replace import Replacer
from rasp_ir import nodes as ir
from rasp_ir.passes import rewrite

TEXT = """@vocab {"a", "b"};
@maxlen 4;
logits = project(inp=tokens, op=matrix(rows=["a", "b"], cols=["a", "b"],
                                       values=[[1.04, 2.0], [0.0, -1.26]]))
       + project(inp=tokens, op=matrix(rows=["a", "b"], cols=["a", "b"],
                                       values=[[0.31, 0.0], [2.0, 1.0]]))
       + project(op=matrix(rows=["a", "b"], values=[3.0, 0.5]));
@output logits;
"""
NAMES = ["out.first", "out.second", "out.bias"]


def _with(program: ir.Program, fn) -> ir.Program:
    return attrs.evolve(program, bindings=tuple(attrs.evolve(b, value=rewrite(b.value, fn))
                                                for b in program.bindings))


def _named(program: ir.Program) -> ir.Program:
    """The parsed program with its three tables named as extraction names them."""
    names = iter(NAMES)
    return _with(program, lambda node, _: attrs.evolve(node, name=next(names))
                 if isinstance(node, ir.Matrix) else node)


class Fixed(Replacer):
    """A Replacer over a fixed program whose tables are swapped for those in `tables`."""

    def build(self, mlp_outputs=None, tables=None):
        tables = self.tables if tables is None else tables
        return _with(self.circuit, lambda node, _: tables.get(node.name, node)
                     if isinstance(node, ir.Matrix) else node)


class Judge:
    """Keeps a program while `keeps(tables)` holds for its tables {name: values}."""

    def __init__(self, keeps):
        self.keeps = keeps

    def passes(self, program, floor):
        tables = {n.name: np.array(n.values) for b in program.bindings
                  for n in ir.walk(b.value) if isinstance(n, ir.Matrix)}
        return {"all": 1.0} if self.keeps(tables) else None


def _replacer(keeps):
    program = grammar.parse(TEXT)
    return Fixed(_named(program), None, ("a", "b"), ("a", "b"), None, Judge(keeps),
                 {"all": 0.9})


def test_each_table_to_integers_where_the_judge_keeps_it():
    r = _replacer(lambda tables: True)
    r.round_tables(NAMES)
    final = {n: np.array(m.values) for n, m in r.tables.items()}
    assert np.array_equal(final["out.first"], [[1.0, 2.0], [0.0, -1.0]])
    assert np.array_equal(final["out.second"], [[0.0, 0.0], [2.0, 1.0]])
    assert np.array_equal(final["out.bias"], [3.0, 0.0])
    assert r.judged == 3
    assert [e["primitive"] for e in r.log] == ["rounded to 0 decimals"] * 3


def test_one_decimal_where_integers_lose_the_model():
    # out.first may not lose its -1.26 below one decimal; the bias must keep its 0.5
    keeps = lambda t: (abs(t["out.first"][1, 1] + 1.26) < 0.1   # noqa: E731
                       and t["out.bias"][1] == 0.5)
    r = _replacer(keeps)
    r.round_tables(NAMES)
    final = {n: np.array(m.values) for n, m in r.tables.items()}
    assert np.array_equal(final["out.first"], [[1.0, 2.0], [0.0, -1.3]])
    assert np.array_equal(final["out.second"], [[0.0, 0.0], [2.0, 1.0]])
    assert "out.bias" not in final          # integers refused, and it is at one decimal
    # out.first: integers (refused), tenths; out.second: integers; the bias: integers (refused)
    assert r.judged == 4
    assert [(e["what"], e["primitive"]) for e in r.log] == [
        ("out.first", "rounded to 1 decimals"), ("out.second", "rounded to 0 decimals")]


def test_a_table_the_judge_needs_exact_stays():
    keeps = lambda t: t["out.first"][0, 0] == 1.04   # noqa: E731
    r = _replacer(keeps)
    r.round_tables(NAMES)
    assert "out.first" not in r.tables
    assert set(r.tables) == {"out.second", "out.bias"}


def test_two_decimals_on_the_page_where_one_loses_the_model():
    # out.first may not move its 1.04 by more than 0.01: tenths lose it, hundredths keep it
    # (the table is on the page, so it is worth a third try)
    program = grammar.parse(TEXT.replace("1.04", "1.0412"))
    keeps = lambda t: abs(t["out.first"][0, 0] - 1.0412) < 0.01   # noqa: E731
    r = Fixed(_named(program), None, ("a", "b"), ("a", "b"), None, Judge(keeps), {"all": 0.9})
    r.round_tables(["out.first"])
    assert np.array_equal(np.array(r.tables["out.first"].values), [[1.04, 2.0], [0.0, -1.26]])
    assert [e["primitive"] for e in r.log] == ["rounded to 2 decimals"]
    assert r.judged == 3


def test_a_side_file_table_keeps_its_digits_unjudged():
    # past the inline limit the digits are not on the page: no rounding is tried (each try
    # is a judgement)
    big = ir.Matrix(tuple(str(i) for i in range(600)), None,
                    tuple(1.0412 + i for i in range(600)), name="out.bias")
    program = _with(_named(grammar.parse(TEXT)),
                    lambda node, _: big if isinstance(node, ir.Matrix) and
                    node.name == "out.bias" else node)
    keeps = lambda t: abs(t["out.bias"][0] - 1.0412) < 0.01      # noqa: E731
    r = Fixed(program, None, ("a", "b"), ("a", "b"), None, Judge(keeps), {"all": 0.9})
    r.round_tables(["out.bias"])
    assert "out.bias" not in r.tables and r.judged == 0
