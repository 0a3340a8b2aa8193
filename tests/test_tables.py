"""Tables on the page: the labelled literal forms (`matrix(rows={…})`, the grid with `cols=`),
the pass that unnames small tables (`passes.inline_tables`), and the comment the printer
writes above a statement that reads a side-file table."""

import numpy as np
import pytest

import grammar
from rasp_ir import nodes as ir
from rasp_ir import passes
from rasp_ir.diagnostics import RaspError
from rasp_ir.interpreter import run
from rasp_ir.printer import WIDTH, describe_table, number, pretty
from rasp_ir.tables import write_program

V = ("0", "1", "<bos>")
HEAD = '@vocab {"0", "1", "<bos>"};\n@maxlen 4;\n'

GRID = HEAD + '''a = aggregate(s=select(k=tokens, op=matrix(rows={"0": -3, "1": 2, "<bos>": 25})), v=tokens);
logits = project(inp=a, op=matrix(cols=["0", "1", "<bos>"], rows={
    "0":     [ 3, -2,  0],
    "1":     [-1,  4,  0.5],
    "<bos>": [ 0,  0, 25],
})) + project(op=matrix(rows={"0": 1, "1": 2, "<bos>": 3.25}));
@output logits;
'''

OLD = HEAD + '''a = aggregate(s=select(k=tokens, op=matrix(rows=["0", "1", "<bos>"], values=[-3, 2, 25])),
              v=tokens);
logits = project(inp=a, op=matrix(rows=["0", "1", "<bos>"], cols=["0", "1", "<bos>"],
                 values=[[3, -2, 0], [-1, 4, 0.5], [0, 0, 25]]))
         + project(op=matrix(rows=["0", "1", "<bos>"], values=[1, 2, 3.25]));
@output logits;
'''


def parse(text):
    return grammar.parse(text, "tables.rasp")


def test_labelled_forms_read_like_the_positional_form():
    labelled, positional = parse(GRID), parse(OLD)
    assert labelled == positional
    score = labelled.binding("a").value.selector.predicate
    assert score == ir.Matrix(V, None, (-3.0, 2.0, 25.0))
    table = labelled.binding("logits").value.terms[0].predicate
    assert table.rows == V and table.cols == V
    assert table.values == ((3.0, -2.0, 0.0), (-1.0, 4.0, 0.5), (0.0, 0.0, 25.0))
    assert run(labelled, ["010"])[0].logits == run(positional, ["010"])[0].logits


def test_printed_grid_is_aligned_labelled_and_reads_back():
    program = parse(OLD)
    text = pretty(program)
    assert parse(text) == program and pretty(parse(text)) == text
    assert 'op=matrix(rows={"0": -3, "1": 2, "<bos>": 25})' in text
    assert 'project(op=matrix(rows={"0": 1, "1": 2, "<bos>": 3.25}))' in text
    start = text.index("logits = ")
    grid = text[start:text.index("\n}))", start) + 4].splitlines()
    assert grid[0] == 'logits = project(inp=a, op=matrix(cols=["0", "1", "<bos>"], rows={'
    assert grid[1].lstrip().startswith("#")          # the column labels, over their columns
    assert grid[2:] == ['    "0":     [  3,  -2,       0],',
                        '    "1":     [ -1,   4,     0.5],',
                        '    "<bos>": [  0,   0,      25],',
                        "}))"]
    # every column ends where its label in the header ends
    ends = {line.index("]") for line in grid[2:5]}
    assert len(ends) == 1 and grid[1].endswith('"<bos>"') and len(grid[1]) == ends.pop()


@pytest.mark.parametrize("value, text", [
    (3.0, "3"), (-2.0, "-2"), (0.5, "0.5"), (-0.0, "0"), (0.1, "0.1"), (1e-05, "1e-05"),
    (2.0 ** 53, "9007199254740992"), (1e16, "1e+16"), (float("inf"), "1e999")])
def test_numbers_print_as_integers_when_integral(value, text):
    assert number(value) == text


def _mlp_program(W_in, b_in, W_out, b_out):
    """Tables where only their lengths must fit (an MLP over tokens), to print and read."""
    mlp = ir.Mlp((ir.Tokens(),), W_in, b_in, W_out, b_out)
    return ir.Program(bindings=(ir.Binding("h", mlp),), output=ir.Ref("h"), vocab=V, maxlen=4)


@pytest.mark.parametrize("hidden", [(0, 1, 2), (True, False), ("a", 3, None, 0.5, False),
                                    (-2.0,), ("u", "<bos>")])
def test_labels_of_every_kind_and_the_positional_fallback(hidden):
    out = ("x", 7, True)
    program = _mlp_program(
        ir.Matrix(V, hidden, tuple(tuple(float(i) for i, _ in enumerate(hidden)) for _ in V)),
        ir.Matrix(hidden, None, tuple(0.5 for _ in hidden)),
        ir.Matrix(hidden, out, tuple((1.0, -2.5, 3.0) for _ in hidden)),
        ir.Matrix((0,), out, ((1.0, 2.0, 3.0),)))        # a 1 × n bias
    text = pretty(program)
    assert "values=" not in text and parse(text) == program


def test_labels_equal_as_keys_print_positionally():
    # 1 and True are one dict key: the positional form keeps both rows
    hidden = (1, True)
    program = _mlp_program(ir.Matrix(V, hidden, tuple((1.0, 2.0) for _ in V)),
                           ir.Matrix(hidden, None, (1.0, 2.0)),
                           ir.Matrix(hidden, ("y",), ((1.0,), (2.0,))),
                           ir.Matrix(("y",), None, (0.0,)))
    text = pretty(program)
    assert "b_in=matrix(rows=[1, True], values=[1, 2])" in text
    assert parse(text) == program


def test_wide_and_long_tables_wrap_and_read_back():
    hidden = tuple(f"c{i}" for i in range(40))
    program = _mlp_program(
        ir.Matrix(V, hidden, tuple(tuple(1.0 / (i + 3) for i in range(40)) for _ in V)),
        ir.Matrix(hidden, None, tuple(float(i) for i in range(40))),
        ir.Matrix(hidden, ("y",), tuple((float(i),) for i in range(40))),
        ir.Matrix(("y",), None, (0.0,)))
    text = pretty(program)
    assert all(len(line) <= WIDTH for line in text.splitlines())
    assert parse(text) == program


@pytest.mark.parametrize("source, line, message", [
    ('logits = project(inp=tokens, op=matrix(cols=["0", "1"], rows={\n'
     '    "0": [3, -2],\n    "1": [-1],\n}));', 5, "row '1' has 1 values for 2 cols"),
    ('l = project(op=matrix(rows={"0": [1], "1": 2}));', 3, "must be numbers"),
    ('l = project(op=matrix(rows={"0": 1, "1": 2}, values=[1, 2]));', 3, "takes no values="),
    ('l = project(op=matrix(rows={"0": 1, "0": 2}));', 3, "appears twice"),
    ('l = project(inp=tokens, op=matrix(cols=["0"], rows={\n    "0": 1,\n}));', 4,
     "not a list of numbers"),
])
def test_malformed_tables_are_E212_at_their_line(source, line, message):
    with pytest.raises(RaspError) as info:
        parse(HEAD + source + "\n")
    assert info.value.codes == ["E212"]
    text = str(info.value)
    assert f"tables.rasp:{line}:" in text and message in text


# ---------------------------------------------------------------- inline_tables

def _named(rows, cols, name, fill=1.0):
    values = tuple(fill for _ in rows) if cols is None else \
        tuple(tuple(fill for _ in cols) for _ in rows)
    return ir.Matrix(tuple(rows), None if cols is None else tuple(cols), values, name=name)


def _program(select_table, project_table, mlp_tables):
    score = ir.Select(ir.Tokens(), ir.Tokens(), select_table)
    vec = ir.Aggregate(score, ir.Tokens())
    return ir.Program(bindings=(
        ir.Binding("a", vec),
        ir.Binding("h", ir.Mlp((ir.Ref("a"),), *mlp_tables)),
        ir.Binding("logits", ir.Project(ir.Ref("a"), project_table)),
    ), output=ir.Ref("logits"), vocab=V, maxlen=4)


def test_inline_tables_unnames_small_tables_only():
    big = tuple(range(200))
    program = _program(
        _named(V, V, "qk"),                                      # 9 entries
        _named(V, V, "out"),
        (_named(V, range(200), "W_in"), _named(range(200), None, "b_in"),  # 600 + 400 + …
         _named(range(200), ("y",), "W_out"), _named(("y",), None, "b_out")))
    out = passes.inline_tables(program, limit=512)
    assert out.binding("a").value.selector.predicate.name is None
    assert out.binding("logits").value.predicate.name is None
    mlp = out.binding("h").value
    # 1401 entries together: the whole MLP stays in the side-file, even its small biases
    assert [t.name for t in (mlp.W_in, mlp.b_in, mlp.W_out, mlp.b_out)] == \
        ["W_in", "b_in", "W_out", "b_out"]
    # only names change
    assert out == passes.inline_tables(out)
    strip = passes.inline_tables(program, limit=10 ** 6)
    assert all(t.name is None for t in (strip.binding("h").value.W_in,))
    assert strip.binding("a").value.selector.predicate.values == \
        program.binding("a").value.selector.predicate.values
    # a table over the limit keeps its name
    kept = passes.inline_tables(program, limit=8)
    assert kept.binding("logits").value.predicate.name == "out"
    assert len(big) == 200


def test_small_mlp_goes_inline_whole():
    program = _program(_named(V, V, "qk"), _named(V, V, "out"),
                       (_named(V, ("u", "w"), "W_in"), _named(("u", "w"), None, "b_in"),
                        _named(("u", "w"), ("y",), "W_out"), _named(("y",), None, "b_out")))
    mlp = passes.inline_tables(program).binding("h").value
    assert all(t.name is None for t in (mlp.W_in, mlp.b_in, mlp.W_out, mlp.b_out))


# ---------------------------------------------------------------- comments on side-file tables

def test_side_file_tables_get_a_comment_and_still_read_back(tmp_path):
    rng = np.random.default_rng(0)
    values = np.round(rng.normal(size=(152, 3)), 2)
    values[3, 1], values[0, 2] = 25.1, -19.8
    out = ir.Matrix(tuple(range(152)), V, tuple(map(tuple, values.tolist())), name="out.m1")
    bias = ir.Matrix(V, None, (0.0, 0.0, 0.0), name="out.bias")
    program = ir.Program(bindings=(
        ir.Binding("logits", ir.LogitsSum((ir.Project(ir.Indices(), out),
                                           ir.Project(None, bias)))),),
        output=ir.Ref("logits"), vocab=V, maxlen=152)
    path = tmp_path / "p.rasp"
    write_program(program, path)
    text = path.read_text()
    lines = text.splitlines()
    i = lines.index(next(line for line in lines if line.startswith("logits = ")))
    assert lines[i - 2].startswith('# "out.m1": 152 × 3, indices × outputs; '
                                   'largest: (3, "1") 25.1, (0, "<bos>") -19.8, ')
    assert lines[i - 1] == '# "out.bias": 3, outputs; all zero'
    assert all(len(line) <= WIDTH for line in lines)
    again = grammar.load(path)
    assert again == program and pretty(again) == text


def test_table_comment_fits_a_line():
    long = "x" * 80
    table = ir.Matrix((long, "b"), (long,), ((3.0,), (-4.0,)), name="n" * 30)
    line = describe_table(table, "queries", "keys")
    assert len(line) <= WIDTH and line.startswith('# "' + "n" * 30)
