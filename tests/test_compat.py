"""@compat "rasp0.1": RASP 0.1's operator table (oracle cases Q01-Q07) and its defaults;
W101 in the default mode wherever the two tables read a statement differently."""

import json

import pytest

import grammar
from grammar.parser import lark_parser
from rasp_ir.names import KEYWORDS
from rasp_ir.printer import pretty

from conftest import SHARED

CASES = {c["id"]: c for c in json.loads(
    (SHARED / "conformance" / "rasp01_cases.json").read_text())["cases"]}
EXPECTED = {"Q01": False, "Q02": False, "Q03": [False] * 5, "Q04": [False] * 5, "Q05": 64,
            "Q06": 4, "Q07": [0, 1, 2, 3]}


@pytest.mark.parametrize("case", sorted(EXPECTED))
def test_rasp01_precedence_quirks(case):
    session = grammar.Session()
    session.run('@compat "rasp0.1";')
    (value,) = session.run(CASES[case]["call"])
    assert value == EXPECTED[case]


def test_default_mode_warns_where_rasp01_reads_differently():
    text = 'x = not tokens in ["h"];\ny = tokens;\nz = 2 ^ 3 ^ 2;\n'
    program, diagnostics = grammar.elaborate(text, "w.rasp")
    assert program is not None
    assert [(d.code, d.span.line) for d in diagnostics] == [("W101", 1), ("W101", 3)]


def test_compat_programs_print_unambiguously():
    src = ('@compat "rasp0.1";\nx = indices % 3 * 2 + -2 ^ 2;\n'
           'y = (not tokens in ["h"]) and indices == 1 or x > 2;\n@output x;')
    program = grammar.parse(src)
    assert grammar.parse(pretty(program)) == program
    assert program.binding("x").value.left.right.value == 6     # indices % (3 * 2)


# the rules the two operator tables define differently; every other rule and every terminal is
# the base grammar's, imported by rasp01.lark under its own name
OPERATOR_RULES = {"expr", "test", "or_test", "and_test", "not_test", "comparison", "_comp_op",
                  "arith", "term", "factor", "power", "in_test", "cond_test", "logic", "modulo",
                  "unary"}


def _owner(rule: str) -> str:
    # Lark names the helper rule of a repetition in `comparison` `__comparison_plus_4`
    return rule[2:].rsplit("_", 2)[0] if rule.startswith("__") else rule


def _rules(parser):
    return {(str(r.origin.name), tuple(str(s.name) for s in r.expansion), str(r.alias),
             r.options.expand1) for r in parser.rules
            if _owner(str(r.origin.name)) not in OPERATOR_RULES}


def test_rasp01_grammar_shares_everything_but_the_operator_rules():
    ours, theirs = lark_parser(False), lark_parser(True)
    assert _rules(ours) == _rules(theirs)
    assert {(t.name, repr(t.pattern)) for t in ours.terminals} == \
        {(t.name, repr(t.pattern)) for t in theirs.terminals}
    assert set(ours.lexer_conf.ignore) == set(theirs.lexer_conf.ignore) == {"WS", "COMMENT"}
    assert lark_parser(True) is theirs           # the tables are built once per process


def test_the_keywords_are_the_grammars_words():
    words = {t.pattern.value for t in lark_parser(False).terminals
             if t.pattern.type == "str" and t.pattern.value.isidentifier()}
    assert words == KEYWORDS
