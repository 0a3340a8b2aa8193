"""Syntax and type errors: the right code, the right place, every error in a file."""

import pytest

import grammar
from rasp_ir.diagnostics import CODES, RaspError


def errors(text):
    with pytest.raises(RaspError) as info:
        grammar.parse(text, "f.rasp")
    return info.value


@pytest.mark.parametrize("text, code, line, column", [
    ("x = tokens\ny = indices;", "E102", 1, 10),
    ("x = tokens", "E102", 1, 10),
    ("x = select(tokens, tokens, =);", "E103", 1, 28),
    ('x = "a" if tokens = "b" else "c";', "E103", 1, 19),
    ("x = select(tokens, tokens, ==;", "E104", 1, 11),
    ("x = (tokens + 1));", "E104", 1, 17),
    ("def f(x) { y = x; }", "E105", 1, 1),
    ("x = tokens $ 1;", "E106", 1, 12),
    ('x = "abc;', "E107", 1, 5),
    ("x = indices < 2 < 3;", "E108", 1, 5),
    ("f(x) = 3;", "E109", 1, 1),
    ("@foo 3;", "E110", 1, 1),
    ("x = 1;\n@maxlen 3;", "E110", 2, 1),
    ('@vocab {"a", "b"};\nx = tokens + 1;', "E201", 2, 5),
    ("x = tokens and select(indices, indices, ==);", "E202", 1, 5),
    ("x = indicator(3);", "E204", 1, 5),
    ('@vocab {"a", "b"};\nx = {"a": 1}[tokens];', "E206", 2, 5),
    # a word among a numerical s-op's values would fail where it is added, not here
    ('@vocab {"a", "b"};\n@maxlen 4;\nx = numerical(indices) if tokens == "a" else "none";',
     "E203", 3, 5),
    ("x = tokens[indices];", "E207", 1, 5),
    ("x = [1, 2][5];", "E208", 1, 5),
    ("x = select(indices, indices, ==) + 1;", "E214", 1, 5),
    ("x = aggregate(tokens, tokens);", "E220", 1, 5),
    ("x = aggregate(select(indices, indices, ==), tokens, tokens);", "E221", 1, 5),
    ("x = selector_width(tokens);", "E224", 1, 5),
    ("def f(x) { return x; }\ny = f(1, 2);", "E240", 2, 5),
    ("def f(x) { return f(x); }\ny = f(tokens);", "E241", 1, 19),
    ("for i in tokens { x = i; }", "E242", 1, 10),
    ("x = undefined_name;", "E250", 1, 5),
    ("indices = 2;", "E251", 1, 1),
    ('load "no_such_library";', "E252", 1, 1),
    ("x = 3(1);", "E253", 1, 5),
    ("@output select(indices, indices, ==);", "E260", 1, 1),
])
def test_error_code_and_location(text, code, line, column):
    error = errors(text)
    first = error.diagnostics[0]
    assert first.code == code, error.render()
    assert (first.span.line, first.span.column) == (line, column), error.render()
    assert code in CODES


def test_every_type_error_in_a_file_is_reported():
    error = errors("a = undefined1;\nb = selector_width(tokens);\nc = aggregate(tokens, 1);\n"
                   "d = a + 1;\ne = tokens + 1;")
    # `d` uses `a`, whose definition failed: no second error for it
    assert error.codes == ["E250", "E224", "E220"]


def test_every_syntax_error_in_a_file_is_reported():
    error = errors("a = tokens +;\nb = 1 1;\ndef f(x) { y = x; }\nc = 3\nd = 4;")
    assert error.codes == ["E101", "E101", "E105", "E102"]
    assert [d.span.line for d in error.diagnostics] == [1, 2, 3, 4]


def test_rendering_has_caret_and_hint():
    text = errors("h = selector_width(tokens);").render()
    assert "error[E224]" in text
    assert "--> f.rasp:1:5" in text
    assert " 1 | h = selector_width(tokens);" in text
    assert "^^^^^^^^^^^^^^^^^^^^^^" in text
    assert "hint: build a selector first" in text


def test_did_you_mean():
    error = errors("hist = 1;\ny = hsit;")
    assert "did you mean `hist`" in error.diagnostics[0].hint


def test_error_inside_library_function_is_reported_at_call_site():
    error = errors("x = sort(tokens, select(indices, indices, ==));")
    d = error.diagnostics[0]
    assert d.span.file == "f.rasp" and d.span.line == 1
    assert "inside sort" in d.note


def test_runtime_errors_name_input_position_and_values():
    from rasp_ir.interpreter import run
    program = grammar.parse("x = 1 / (indices - 2);\n@output x;")
    with pytest.raises(RaspError) as info:
        run(program, ["ab", "abcd"])
    d = info.value.diagnostics[0]
    assert d.code == "R231"
    assert "input 2, position 2" in d.message


def test_categorical_mean_is_a_runtime_error():
    from rasp_ir.interpreter import run
    program = grammar.parse("x = aggregate(select(1, 1, ==), tokens);\n@output x;")
    assert run(program, ["aaa"])[0].output == ["a", "a", "a"]
    with pytest.raises(RaspError) as info:
        run(program, ["abc"])
    assert info.value.codes == ["R230"]
    assert "query position 0 selected 3 keys: 'a', 'b', 'c'" in info.value.diagnostics[0].message


def test_compat_mode_averages_numbers_and_defaults_to_zero():
    from rasp_ir.interpreter import run
    src = ('@compat "rasp0.1";\nm = aggregate(select(indices, indices, <=), indices);\n'
           'e = aggregate(select(indices, indices - 1, ==), tokens);\n@output m;')
    program = grammar.parse(src)
    assert run(program, ["abc"])[0].output == [0, 0.5, 1.0]
    assert run(program, ["abc"], node=program.binding("e").value)[0].output == [0, "a", "b"]


@pytest.mark.parametrize("text, code", [
    ("", None), ("x = 1;", None), ("@maxlen 0;", "E110"), ('@attention "loud";', "E110"),
    ('@compat "rasp2";', "E110"), ("@expect tokens == 1;", "E270"),
    ('@vocab {"a"};\nx = tokens;\n@expect x("b") == "b";', "E270"),
])
def test_directives(text, code):
    program, diagnostics = grammar.elaborate(text, "f.rasp")
    assert [d.code for d in diagnostics][:1] == ([code] if code else [])


def test_a_numerical_default_is_a_warning_that_keeps_the_binding():
    # W222 warns and the program still runs (an empty row reads the default); only the
    # compiler refuses it
    from compiler.compile import compile_program
    from rasp_ir.interpreter import run
    from rasp_ir.types import Num, output_type
    src = ('@vocab {"a", "b"};\n@maxlen 5;\nis_a = indicator(tokens == "a");\n'
           'frac = aggregate(select(indices, indices, <), is_a, 1);\n@output frac;')
    program, diagnostics = grammar.elaborate(src, "f.rasp")
    assert [(d.code, d.severity, d.span.line, d.span.column) for d in diagnostics] == \
        [("W222", "warning", 4, 8)]
    assert program is not None and isinstance(output_type(program), Num)
    # position 0 selects nothing: the default; then the mean of the earlier is_a
    assert run(program, ["aba"])[0].output == [1, 1.0, 0.5]
    with pytest.raises(RaspError) as info:
        compile_program(program)
    assert info.value.codes == ["W222"]
