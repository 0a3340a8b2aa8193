"""The REPL: statements accumulate, applications print values, errors do not end the session."""

import io

from rasp_ir.cli.repl import repl


def session(text):
    out = io.StringIO()
    assert repl(None, stdin=io.StringIO(text), stdout=out) == 0
    return out.getvalue()


def test_values_definitions_and_errors():
    text = session('flip = select(indices, length - indices - 1, ==);\n'
                   'reverse = aggregate(flip,\n tokens);\n'        # a statement over two lines
                   'reverse("abc");\n'
                   'nope;\n'
                   '2 ^ 3 ^ 2;\n'
                   'def f(x) { return x + 1; }\n'
                   'f(tokens_int)([1, 2]);\n'
                   'exit\n'
                   'reverse("never");\n')
    lines = text.splitlines()
    assert "['c', 'b', 'a']" in lines
    assert any("error[E250]: undefined name `nope`" in line for line in lines)
    assert "512" in lines
    assert "[2, 3]" in lines
    assert "never" not in text


def test_unapplied_sop_prints_its_type_and_definition():
    text = session('@vocab {"a", "b"};\nx = tokens == "a";\nx;\n')
    assert "s-op : bool = x" in text
