"""`rasp fmt`: the layout made canonical, comments and every token kept; the shipped examples, the
libraries and the printer's output are already formatted; bad input is a diagnostic."""

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, note, settings

import grammar
from grammar.formatter import format_source
from rasp_ir import cli
from rasp_ir.printer import pretty

from strategies import programs

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
LIBRARY = Path(__file__).resolve().parent.parent / "rasp_ir" / "lib"     # `load "rasplib";`
SHIPPED = sorted(EXAMPLES.glob("*.rasp")) + sorted(LIBRARY.glob("*.rasp"))


def fmt(capsys, *args):
    status = cli.main(["fmt", *map(str, args)])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


# ---------------------------------------------------------------- the shipped examples

@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_examples_are_formatted(path, capsys):
    assert format_source(path.read_text()) == path.read_text()
    assert fmt(capsys, "--check", path)[0] == 0


def test_fmt_check_gates_every_shipped_example_at_once(capsys):
    status, _, err = fmt(capsys, "--check", *SHIPPED)
    assert status == 0, err


# ---------------------------------------------------------------- comments survive

MESSY = '''# a comment before everything


@vocab   V={"a","b"} ;  # the vocabulary
@maxlen 4;
# flip: the mirror selector
flip=select(indices,length-indices-1,==);
x = aggregate( flip ,
        tokens );   # a statement over two lines
def f(a) {   # a function
  # inside, above the return
  return a+1 ;
  # at the end of the body
}



y = f(indices)  ;
# the end
'''

MESSY_FORMATTED = '''# a comment before everything

@vocab V = {"a", "b"};  # the vocabulary
@maxlen 4;
# flip: the mirror selector
flip = select(indices, length - indices - 1, ==);
x = aggregate(flip,
    tokens);  # a statement over two lines
def f(a) {    # a function
    # inside, above the return
    return a + 1;
    # at the end of the body
}

y = f(indices);
# the end
'''


def test_layout_is_canonical_and_comments_stay_where_they_were():
    out = format_source(MESSY)
    assert out == MESSY_FORMATTED
    assert format_source(out) == out
    assert grammar.parse(out) == grammar.parse(MESSY)


def test_comments_attach_to_the_statement_they_precede_or_end():
    text = 'a = 1;\n# about b\nb = 2;  # b ends here\n\n\n# about c\n\nc = 3;\n'
    assert format_source(text) == ('a = 1;\n# about b\nb = 2;  # b ends here\n\n# about c\n\n'
                                   'c = 3;\n')


def test_trailing_comments_of_consecutive_lines_line_up():
    text = 'a = 1; # one\nlonger_name = 2; # two\n\nc = 3;        # alone\n'
    assert format_source(text) == ('a = 1;            # one\nlonger_name = 2;  # two\n\n'
                                   'c = 3;  # alone\n')


@pytest.mark.parametrize("source, formatted", [
    ("x=-1;", "x = -1;"),
    ("x = a - -b;", "x = a - -b;"),
    ("x = - (a+b);", "x = -(a + b);"),
    ("x=not  a  not in  [1,2];", "x = not a not in [1, 2];"),
    ("x = {'a':1,'b' :2} [tokens];", "x = {'a': 1, 'b': 2}[tokens];"),
    ("x = select(k = tokens, op = (k == 'a'));", "x = select(k=tokens, op=(k == 'a'));"),
    ("x = [i*2 for i in 0 .. 3 if i>0];", "x = [i * 2 for i in 0..3 if i > 0];"),
    ("f = lambda k,q : k==q;", "f = lambda k, q: k == q;"),
    ("x = a ** 2 ^ b;", "x = a ** 2 ^ b;"),
    ("a = 1; b = 2;", "a = 1;\nb = 2;"),
    ("for p in {'a': 1} { x = p; }", "for p in {'a': 1} {\n    x = p;\n}"),
    ("def g() { return f (x) [0]; }", "def g() {\n    return f(x)[0];\n}"),
])
def test_spacing(source, formatted):
    assert format_source(source) == formatted + "\n"


def test_a_table_keeps_its_layout():
    text = ('@vocab {"a", "b"};\nm = matrix(cols=["a", "b"], rows={\n    #   "a"  "b"\n'
            '    "a": [ 1,  20],\n    "b": [30,   4],\n});\n')
    assert format_source(text) == text


# ---------------------------------------------------------------- the printer's output

_SETTINGS = dict(deadline=None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def check_printed_is_formatted(program):
    text = pretty(program)
    note(text)
    assert format_source(text) == text


@settings(max_examples=80, **_SETTINGS)
@given(programs())
def test_the_printers_output_is_formatted(program):
    check_printed_is_formatted(program)


@pytest.mark.slow
@settings(max_examples=2000, **_SETTINGS)
@given(programs())
def test_the_printers_output_is_formatted_thoroughly(program):
    check_printed_is_formatted(program)


def test_an_extracted_program_with_tables_is_formatted(tmp_path):
    """Side-file tables with the printer's comments above them, and the same tables inline as
    aligned grids."""
    from compiler.compile import compile_program, save_compiled
    from extractor.decompile.extract import extract_full
    from extractor.tasks.checkpoint import load_subject
    from rasp_ir.passes import inline_tables
    save_compiled(compile_program(grammar.load(EXAMPLES / "histogram.rasp"), 5), tmp_path)
    program = extract_full(load_subject(tmp_path)).program
    for text in (pretty(program), pretty(inline_tables(program))):
        assert "table(" in text or "matrix(cols=" in text
        assert format_source(text) == text


# ---------------------------------------------------------------- the command

def test_fmt_prints_and_writes_the_formatted_file(capsys, tmp_path):
    target = tmp_path / "messy.rasp"
    target.write_text(MESSY)
    status, out, _ = fmt(capsys, target)
    assert status == 0 and out == MESSY_FORMATTED
    status, _, err = fmt(capsys, "--check", target)
    assert status == 1 and "not formatted" in err
    assert fmt(capsys, "--write", target)[0] == 0
    assert target.read_text() == MESSY_FORMATTED
    assert fmt(capsys, "--check", target)[0] == 0


def test_fmt_write_rewrites_atomically(capsys, tmp_path, monkeypatch):
    target = tmp_path / "messy.rasp"
    target.write_text('@vocab {"a","b"};\nx=aggregate(select(indices,length-indices-1,==),tokens);'
                      '\n@output   x;\n@expect x("ab")=="ba";\n')
    before = target.read_text()

    # a write that fails half-way leaves the old file whole and no temporary file behind
    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(os, "replace", broken_replace)
    status, _, err = fmt(capsys, "--write", target)
    assert status != 0 and "cannot write" in err and "No space left" in err
    assert target.read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["messy.rasp"]
    monkeypatch.undo()

    status, out, _ = fmt(capsys, "--write", target)
    assert status == 0 and out == ""
    assert target.read_text() == ('@vocab {"a", "b"};\n'
                                  'x = aggregate(select(indices, length - indices - 1, ==), tokens);\n'
                                  '@output x;\n@expect x("ab") == "ba";\n')
    assert sorted(p.name for p in tmp_path.iterdir()) == ["messy.rasp"]
    assert fmt(capsys, "--check", target)[0] == 0
    assert cli.main(["check", str(target)]) == 0


@pytest.mark.parametrize("original", [
    (EXAMPLES / "reverse.rasp").read_text(),                     # comments
    "def f(x) {\n    return x;\n}\ny = f(tokens);\n@output y;\n",   # a function
])
def test_fmt_simplify_write_refuses_to_drop_comments_or_functions(capsys, tmp_path, original):
    target = tmp_path / "kept.rasp"
    target.write_text(original)
    status, _, err = fmt(capsys, "--simplify", "--write", target)
    assert status == 2 and "refusing" in err      # a refusal, not a finding
    assert target.read_text() == original
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept.rasp"]
    assert fmt(capsys, "--write", target)[0] == 0       # the layout alone loses nothing
    assert target.read_text() == original


def test_fmt_of_a_file_that_does_not_parse_is_a_diagnostic(capsys, tmp_path):
    bad = tmp_path / "bad.rasp"
    bad.write_text("x = (1;\n")
    status, out, err = fmt(capsys, bad)
    assert status != 0 and "E104" in err and "Traceback" not in err and out == ""
