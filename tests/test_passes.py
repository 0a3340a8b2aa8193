"""Simplification passes (rasp_ir/passes.py): each keeps what the interpreter computes at the
@output on random inputs, removes what it should (counted), reaches a fixed point, and prints to
text that parses back to the same program. Programs: every example, D-RASP programs with zero
and constant score/logit terms put in on purpose (written by hand, and extracted from a model
compiled from examples/drasp_copy.rasp and examples/histogram.rasp)."""

from __future__ import annotations

import attrs
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import grammar
from rasp_ir import cli
from rasp_ir import nodes as ir
from rasp_ir import passes
from rasp_ir.diagnostics import RaspError
from rasp_ir.expects import check_expects
from rasp_ir.interpreter import run
from rasp_ir.printer import pretty
from rasp_ir.tables import write_program

from conftest import EXAMPLES

NAMES = sorted(f.stem for f in EXAMPLES.glob("*.rasp"))
SEMANTIC = [passes.remove_dead, passes.drop_zero_terms, passes.fold_constants, passes.simplify,
            passes.descriptive_names, passes.inline_selectors]


# ---------------------------------------------------------------- comparing two programs

def outcome(program, seq):
    try:
        (result,) = run(program, [seq])
    except RaspError as exc:
        return ("error", tuple(d.code for d in exc.diagnostics))
    return ("ok", result.output, result.logits)


def assert_agree(before, after, seq):
    """The same output; logits/distributions to 1e-9 (dropping a constant score or logit
    re-rounds), and the decoded output wherever the top two are not within 1e-6."""
    a, b = outcome(before, seq), outcome(after, seq)
    assert a[0] == b[0], (seq, a, b)
    if a[0] == "error" or a[2] is None:
        assert a == b, seq
        return
    la, lb = np.array(a[2]), np.array(b[2])
    assert np.allclose(la, lb, rtol=1e-9, atol=1e-9), (seq, np.abs(la - lb).max())
    top = np.sort(la, axis=-1)
    clear = top[:, -1] - top[:, -2] > 1e-6
    assert [o for o, c in zip(a[1], clear) if c] == [o for o, c in zip(b[1], clear) if c], seq


def sequences(program, max_len=8):
    vocab = list(program.vocab)
    top = min(program.maxlen, max_len)
    if program.bos is None:
        return st.lists(st.sampled_from(vocab), min_size=1, max_size=top)
    return st.lists(st.sampled_from(vocab), max_size=top - 1).map(lambda s: [program.bos] + s)


def reparsed(program, tmp_path=None):
    """The program printed and read back (through a side-file when it has named tables)."""
    if tmp_path is None:
        return grammar.parse(pretty(program))
    path = tmp_path / "program.rasp"
    write_program(program, path)
    return grammar.load(path)


def terms(program, node):
    """How many terms a score or logit sum has (1 for anything else), behind Refs."""
    while isinstance(node, ir.Ref):
        node = program.binding(node.name).value
    return len(node.terms) if isinstance(node, (ir.ScoreSum, ir.LogitsSum)) else 1


def score_terms(program, aggregate_name):
    return terms(program, program.binding(aggregate_name).value.selector)


def logit_terms(program):
    predict = program.binding("prediction").value if program.output == ir.Ref("prediction") \
        else None
    return terms(program, predict.logits if predict is not None else program.output)


# ---------------------------------------------------------------- (a) every example

_programs: dict = {}


def example(name):
    if name not in _programs:
        _programs[name] = grammar.load(EXAMPLES / f"{name}.rasp")
    return _programs[name]


def with_dead_code(program):
    """Two bindings nothing reads, one of them with constant arithmetic to fold."""
    dead = (ir.Binding("dead_1", ir.BinaryOp("==", ir.Indices(),
                                             ir.BinaryOp("+", ir.Const(1), ir.Const(2)))),
            ir.Binding("dead_2", ir.UnaryOp("not", ir.Ref("dead_1"))))
    return attrs.evolve(program, bindings=program.bindings + dead)


@pytest.mark.parametrize("name", NAMES)
def test_passes_keep_every_example(name):
    p = example(name)
    changed = [f(p) for f in SEMANTIC] + [passes.simplify(with_dead_code(p))]
    for q in changed:
        assert check_expects(q) == []

    @settings(max_examples=12, deadline=None)
    @given(sequences(p))
    def agree(seq):
        for q in changed:
            assert_agree(p, q, seq)
    agree()


@pytest.mark.parametrize("name", NAMES)
def test_examples_are_already_simple_and_dead_code_goes(name):
    p = example(name)
    assert passes.simplify(p) == p            # hand-written examples hold nothing to remove
    noisy = with_dead_code(p)
    assert len(passes.remove_dead(noisy).bindings) == len(p.bindings)
    assert passes.simplify(noisy) == p
    assert reparsed(passes.descriptive_names(p)) == passes.descriptive_names(p)


# ---------------------------------------------------------------- (b) D-RASP with noise

VOCAB = ["<bos>", "<sep>", "<eos>", "a", "b", "c", "d"]
POSITIONS = list(range(10))


def matrix(rows, cols=None, fill=0.0):
    """matrix(...) text: `fill` is a number, a function of the row index, or of (row, col)."""
    def value(i, j=None):
        if not callable(fill):
            return float(fill)
        return float(fill(i) if j is None else fill(i, j))
    if cols is None:
        return f"matrix(rows={rows!r}, values={[value(i) for i in range(len(rows))]!r})"
    values = [[value(i, j) for j in range(len(cols))] for i in range(len(rows))]
    return f"matrix(rows={rows!r}, cols={cols!r}, values={values!r})".replace("'", '"')


def drasp_noisy(output="prediction"):
    """examples/drasp_copy.rasp with zero and constant terms added to its scores and logits,
    and one near miss of each (constant tables over keys whose rows do not sum to 1, a bias
    that differs between outputs) that must stay."""
    header = "".join(line + "\n" for line in (EXAMPLES / "drasp_copy.rasp").read_text()
                     .splitlines() if line.startswith("@") and not line.startswith(("@output",
                                                                                   "@expect")))
    bias = lambda i: (i % 3) * 0.25    # noqa: E731
    return header.replace("'", '"') + f"""
s1 = select(q=pos, k=pos, op=(k == q - 1));
a1 = aggregate(s=s1, v=token);
s2 = select(q=token, k=a1, op=(k == q));
s3 = select(q=token, k=pos, op=(q == "<sep>" and k == 1));
s4 = 0.5 * select(k=token, op=(k == "<bos>"));
z1 = select(k=token, op={matrix(VOCAB)});
z2 = select(q=token, k=pos, op={matrix(VOCAB, POSITIONS)});
c1 = select(k=token, op={matrix(VOCAB, fill=3.0)});
c2 = select(q=pos, k=a1, op={matrix(POSITIONS, VOCAB, lambda i, j: i - 4.5)});
c3 = select(k=token, op=True);
c4 = 0.0 * s2;
looked = lookup(a1, {matrix(VOCAB, ["x", "y"], lambda i, j: (i + j) % 4)});
n1 = select(k=looked, op={matrix(["x", "y"], fill=0.001)});
a2 = aggregate(s=s2 + s3 + s4 + z1 + z2 + c1 + c2 + c3 + c4 + n1, v=token);
a3 = aggregate(s=c1 + z2 + c3, v=token);
logits1 = project(inp=a2, op=((out == "<eos>") if inp == "<sep>" else (inp == out)));
zl = project(inp=a1, op={matrix(VOCAB, VOCAB)});
cl = project(inp=a3, op={matrix(VOCAB, VOCAB, lambda i, j: i)});
b1 = project(op={matrix(VOCAB, fill=bias)});
b2 = project(op={matrix(VOCAB, fill=lambda i: -bias(i) / 2)});
cb = project(op={matrix(VOCAB, fill=5.0)});
logits = logits1 + zl + cl + b1 + b2 + cb;
prediction = softmax(logits);
@output {output};
"""


@pytest.fixture(scope="module")
def noisy():
    return {out: grammar.parse(drasp_noisy(out)) for out in ("prediction", "logits")}


def test_drop_zero_terms_counts_under_softmax(noisy):
    p = noisy["prediction"]
    assert (score_terms(p, "a2"), score_terms(p, "a3"), logit_terms(p)) == (10, 3, 6)
    q = passes.drop_zero_terms(p)
    # zero z1 z2 c4, constant-per-query c1 c2 c3 go; n1 reads keys that need not sum to 1
    assert q.binding("a2").value.selector == ir.ScoreSum(tuple(map(ir.Ref, ("s2", "s3", "s4",
                                                                             "n1"))))
    # nothing but constants: uniform attention, kept as one key-only all-zero select
    assert q.binding("a3").value.selector == passes._uniform_score([], None, passes._Facts(p))
    # a softmax ignores cl, cb (constant along the outputs) as well as zero zl
    assert q.binding("logits").value == ir.LogitsSum(tuple(map(ir.Ref, ("logits1", "b1", "b2"))))
    s = passes.simplify(p)
    assert logit_terms(s) == 2            # b1 + b2 folded into one bias
    assert {"z1", "z2", "c1", "c2", "c3", "c4", "zl", "cl", "cb", "b1", "b2"} \
        .isdisjoint(b.name for b in s.bindings)


def test_drop_zero_terms_keeps_constants_the_output_can_see(noisy):
    p = noisy["logits"]                   # the logits themselves are observed: exact
    q = passes.drop_zero_terms(p)
    assert score_terms(q, "a2") == 4      # attention is still a softmax
    assert q.binding("logits").value == ir.LogitsSum(
        tuple(map(ir.Ref, ("logits1", "cl", "b1", "b2", "cb"))))
    s = passes.simplify(p)
    value = s.binding("logits").value
    assert [type(t).__name__ for t in value.terms] == ["Ref", "Ref", "Project"]
    merged = value.terms[2].predicate
    assert merged.name is None and np.allclose(merged.values, [5.0 + (i % 3) * 0.125
                                                               for i in range(7)])
    assert "prediction" not in {b.name for b in s.bindings}


@pytest.mark.parametrize("output", ["prediction", "logits"])
def test_passes_keep_noisy_drasp(noisy, output):
    p = noisy[output]
    changed = [f(p) for f in SEMANTIC]
    for q in changed:
        assert reparsed(q) == q

    @settings(max_examples=25, deadline=None)
    @given(sequences(p, max_len=10))
    def agree(seq):
        for q in changed:
            assert_agree(p, q, seq)
    agree()


def test_a_lone_boolean_selector_stays_a_score_under_hard_attention():
    p = grammar.parse(f"""@vocab {{"a", "b"}}; @maxlen 4;
same = select(tokens, tokens, ==);
zero = select(k=tokens, op={matrix(["a", "b"])});
avg = aggregate(s=same + zero, v=tokens);
@output avg;
""")
    q = passes.simplify(p)
    assert q.binding("avg").value.selector == ir.ScoreScale(1.0, ir.Ref("same"))
    assert reparsed(q) == q and passes.simplify(q) == q
    for seq in (["a"], ["a", "b", "b"], ["b", "a", "a", "b"]):
        assert_agree(p, q, seq)
    soft = passes.simplify(attrs.evolve(p, attention="softmax"))
    assert soft.binding("avg").value.selector == ir.Ref("same")


# ---------------------------------------------------------------- (b) extracted programs

@pytest.fixture(scope="module")
def extracted(tmp_path_factory):
    """Full programs extracted from models compiled from examples (no LayerNorm: exact), with
    zero and constant terms added: drasp_copy (softmax prediction), histogram (logits)."""
    from compiler.compile import compile_program, save_compiled
    from extractor.decompile.extract import extract_full
    from extractor.tasks.checkpoint import load_subject
    out = {}
    for name in ("drasp_copy", "histogram"):
        folder = tmp_path_factory.mktemp(name)
        save_compiled(compile_program(example(name), 5), folder)
        program = extract_full(load_subject(folder)).program
        out[name] = (program, add_noise(program))
    return out


def add_noise(program):
    vocab, positions = tuple(program.vocab), tuple(range(program.maxlen))
    score = program.binding("s0_0").value
    noise = (ir.Select(ir.Tokens(), ir.Indices(), ir.Matrix(     # rows: queries, cols: keys
                 positions, vocab, ((0.0,) * len(vocab),) * len(positions), name="noise.qk")),
             ir.Select(ir.Tokens(), None, ir.Matrix(vocab, None, (2.5,) * len(vocab),
                                                    name="noise.k")))
    logits = program.binding("logits").value
    outputs = logits.terms[-1].predicate.rows
    reader = logits.terms[0]
    rows = reader.predicate.rows
    extra = (ir.Project(reader.operand, ir.Matrix(rows, outputs, ((0.0,) * len(outputs),)
                                                  * len(rows), name="noise.zero")),
             ir.Project(None, ir.Matrix(outputs, None, tuple(float(i % 2) for i in
                                                           range(len(outputs))), name="noise.b")),
             ir.Project(None, ir.Matrix(outputs, None, (1.5,) * len(outputs), name="noise.c")))
    bindings = tuple(
        attrs.evolve(b, value=attrs.evolve(score, terms=score.terms + noise)) if b.name == "s0_0"
        else attrs.evolve(b, value=attrs.evolve(logits, terms=logits.terms + extra))
        if b.name == "logits" else b for b in program.bindings)
    return attrs.evolve(program, bindings=bindings)


@pytest.mark.parametrize("name", ["drasp_copy", "histogram"])
def test_passes_keep_extracted_programs(extracted, name, tmp_path):
    original, p = extracted[name]
    s = passes.simplify(p)
    assert passes.simplify(s) == s
    assert reparsed(s, tmp_path) == s
    reference = passes.simplify(original)
    assert score_terms(p, "a0_0_token") == score_terms(original, "a0_0_token") + 2
    assert score_terms(s, "a0_0_token") == score_terms(reference, "a0_0_token")  # noise gone
    # logits: the zero table goes; under softmax (drasp_copy) the constant biases go too
    # (out.bias and noise.c), under the observed logits of histogram (out.bias is zero there)
    # noise.b and noise.c merge: one bias beside the reading term in both
    assert logit_terms(p) == logit_terms(original) + 3
    assert logit_terms(s) == logit_terms(reference) + 1 == 2
    assert s.binding("logits").value.terms[-1].predicate.name == \
        ("noise.b" if name == "drasp_copy" else "noise.b.folded")
    changed = [f(p) for f in SEMANTIC] + [s]

    @settings(max_examples=15, deadline=None)
    @given(sequences(p, max_len=5))
    def agree(seq):
        for q in changed:
            assert_agree(p, q, seq)
    agree()


# ---------------------------------------------------------------- remove_dead

def test_remove_dead_keeps_what_expects_read_and_drops_unused_library_bindings():
    p = grammar.parse("""@vocab {"a", "b"}; @maxlen 4;
n = length;
flag = tokens == "a";
helper = indices + 1;
unused = helper * 2;
@output flag;
@expect helper("ab") == [1, 2];
""")
    q = passes.remove_dead(p)
    assert [b.name for b in q.bindings] == ["flag", "helper"]
    assert reparsed(q) == q and check_expects(q) == []
    assert passes.remove_dead(attrs.evolve(p, output=None, expects=())) == \
        attrs.evolve(p, output=None, expects=())        # nothing observed: nothing to judge


# ---------------------------------------------------------------- fold_constants

ATOMS = st.one_of(st.integers(-10**6, 10**6), st.floats(-1e6, 1e6, allow_nan=False),
                  st.booleans(), st.sampled_from(["", "a", "bc"]))
OPS = st.sampled_from(["+", "-", "*", "/", "%", "^", "==", "!=", "<", "<=", ">", ">=",
                       "and", "or"])


@settings(max_examples=200, deadline=None)
@given(ATOMS, OPS, ATOMS, st.sampled_from(["-", "not", "+", None]))
def test_folded_constants_compute_what_the_interpreter_does(a, op, b, unary):
    node = ir.BinaryOp(op, ir.Const(a), ir.Const(b))
    if unary:
        node = ir.UnaryOp(unary, node)
    # a binding is never a bare constant (the parser would make it a compile-time value)
    value = ir.Cond(ir.BinaryOp("==", ir.Tokens(), ir.Const("t")), node, node)
    p = ir.Program(bindings=(ir.Binding("x", value),), output=ir.Ref("x"), vocab=("t",),
                   maxlen=3)
    q = passes.fold_constants(p)
    try:
        expected = run(p, [["t", "t"]])[0].output
    except RaspError as exc:      # a type or run-time error stays one
        with pytest.raises(RaspError) as again:
            run(q, [["t", "t"]])
        assert again.value.diagnostics[0].code == exc.diagnostics[0].code
        assume(False)
    got = run(q, [["t", "t"]])[0].output
    assert [(type(v), v) for v in got] == [(type(v), v) for v in expected]
    if isinstance(q.binding("x").value.then, ir.Const):
        assert reparsed(q) == q


def test_fold_constants_folds_nested_constants_and_leaves_errors():
    two_times_three = ir.BinaryOp("*", ir.Const(2), ir.Const(3))
    p = ir.Program(bindings=(
        ir.Binding("x", ir.BinaryOp("+", ir.Indices(), two_times_three)),
        ir.Binding("y", ir.BinaryOp("/", ir.Const(1), ir.Const(0))),
        ir.Binding("z", ir.BinaryOp("*", ir.Const(3 ** 40), ir.Const(3 ** 40))),
        ir.Binding("w", ir.BinaryOp("%", ir.Const(7.5), ir.Const(2.0)))),
        output=ir.Ref("x"), vocab=("t",), maxlen=3)
    q = passes.fold_constants(p)
    assert q.binding("x").value == ir.BinaryOp("+", ir.Indices(), ir.Const(6))
    assert [q.binding(n).value for n in "yzw"] == [p.binding(n).value for n in "yzw"]
    alone = ir.Program(bindings=(ir.Binding("x", two_times_three),), output=ir.Ref("x"))
    assert passes.fold_constants(alone) == alone      # a binding never becomes a bare constant


def test_fold_constants_writes_one_term_sums_as_printed(extracted, tmp_path):
    original, _ = extracted["histogram"]
    assert terms(original, ir.Ref("s0_0")) == 1 and \
        isinstance(original.binding("s0_0").value, ir.ScoreSum)
    assert reparsed(original, tmp_path) != original    # the printer writes the term alone
    folded = passes.fold_constants(original)
    assert isinstance(folded.binding("s0_0").value, ir.Select)
    assert reparsed(folded, tmp_path) == folded


# ---------------------------------------------------------------- names

def test_rename_is_consistent_and_refuses_collisions():
    p = example("reverse")
    q = passes.rename(p, {"opp": "mirror", "flip": "mirror_sel"})
    assert [b.name for b in q.bindings] == ["full_s", "length", "mirror", "mirror_sel", "reverse"]
    assert "opp" not in pretty(q) and reparsed(q) == q
    swapped = passes.rename(p, {"opp": "flip", "flip": "opp"})
    assert [b.name for b in swapped.bindings][2:4] == ["flip", "opp"]
    for names in ({"opp": "flip"}, {"opp": "length"}, {"opp": "select"}, {"opp": "if"},
                  {"opp": "token"}, {"opp": "count"}, {"opp": "2x"}, {"length": "n"},
                  {"nope": "x"}):
        with pytest.raises(ValueError):
            passes.rename(p, names)
    for seq in (["h", "e", "l", "l", "o"], ["a"]):
        assert_agree(p, q, seq)


def test_names_taken_by_the_language_and_the_libraries():
    p = grammar.parse('load "paper_examples";\n@vocab v = {"a", "b"};\n@maxlen 4;\n'
                      'x = tokens == "a";\n@output x;\n')
    taken = passes.taken_names(p)
    assert {"if", "select", "length", "count", "harden", "reverse", "_flip", "v"} <= taken
    assert "x" not in taken
    with pytest.raises(ValueError):
        passes.rename(p, {"x": "reverse"})
    assert passes.taken_names(reparsed(p)) == taken


def test_descriptive_names():
    program = grammar.parse(drasp_noisy().replace(
        "logits = ", "h = harden(a1);\nx = sharpen(a2, 2);\n"
        "e = exists(a1, \"a\", 0.5);\nlh = project(inp=h, op=(inp == out));\nlogits = lh + "))
    named = passes.descriptive_names(program)
    names = {b.name for b in named.bindings}
    assert {"prev_token", "hardened_prev_token", "sharpened_a2", "is_a_exists_prev_token",
            "mean_token"} <= names      # a3 (nothing but constant terms) averages uniformly
    assert {"a1", "h", "x", "e", "a3"}.isdisjoint(names)
    assert {"s1", "logits1", "looked", "prediction"} <= names   # no rule, or not machine-made
    assert reparsed(named) == named and len(named.bindings) == len(program.bindings)
    hist = passes.descriptive_names(grammar.parse(
        '@vocab {"a", "b"}; @maxlen 4;\nh = selector_width(select(tokens, tokens, ==));\n'
        'moved = aggregate(select(indices, indices + 1, ==), tokens);\n'
        'x1 = aggregate(select(indices, indices, (k == q + 1)), tokens);\n@output h;'))
    assert [b.name for b in hist.bindings] == ["hist_token", "moved", "next_token"]
    # a name the extractor made from a machine-made one follows its operand's new name; one a
    # person chose does not
    derived = passes.descriptive_names(grammar.parse(
        '@vocab {"a", "b"}; @maxlen 4; @attention "softmax";\n'
        'a0_0_token = aggregate(select(tokens, tokens, False), tokens);\n'
        'sharpened_a0_0_token = sharpen(a0_0_token, 2);\n'
        'hardened_mine = harden(a0_0_token);\n'
        '@output sharpened_a0_0_token;'))
    assert [b.name for b in derived.bindings] == ["mean_token", "sharpened_mean_token",
                                                  "hardened_mine"]


def test_an_induction_head_is_named_for_what_it_copies():
    # keys: the previous token; queries: the token; k == q (in a branch of an `if`, or
    # alone): the token after an earlier occurrence of this one
    src = ('@vocab {"a", "b", "<bos>"}; @maxlen 6; @attention "softmax";\n'
           'a0_0_token = aggregate(select(indices, indices, (k == q - 1)), tokens);\n'
           'a1_0_m0 = aggregate(select(a0_0_token, tokens, (k == "<bos>" if q in ["<bos>"] '
           'else k == q)), tokens);\n'
           'a1_1_pos = aggregate(select(a0_0_token, tokens, ==), indices);\n'
           'a1_2_token = aggregate(select(a0_0_token, tokens, <), tokens);\n'
           'a1_3_token = aggregate(select(a0_0_token, indices, ==), tokens);\n'
           '@output a1_0_m0;')
    named = passes.descriptive_names(grammar.parse(src))
    assert [b.name for b in named.bindings] == ["prev_token", "induced_token", "induced_pos",
                                                "a1_2_token", "a1_3_token"]
    assert reparsed(named) == named


def test_inline_selectors_writes_a_selector_read_once_inside_its_reader():
    program = grammar.parse(
        '@vocab {"a", "b"}; @maxlen 5;\n'
        'once = select(indices, indices, ==);\n'          # one aggregate: inlined
        'width_sel = select(tokens, tokens, ==);\n'       # one selector_width: inlined
        'shared = select(indices, indices, <=);\n'        # two aggregates: keeps its name
        'checked = select(tokens, tokens, !=);\n'         # an @expect reads it: kept
        'x = aggregate(once, indices);\n'
        'w = selector_width(width_sel);\n'
        'y = aggregate(shared, indices) + aggregate(shared, w);\n'
        'z = aggregate(checked, indices);\n'
        '@output x + y + z;\n'
        '@expect selector_width(checked)("ab") == [1, 1];\n')
    inlined = passes.inline_selectors(program)
    assert [b.name for b in inlined.bindings] == ["shared", "checked", "x", "w", "y", "z"]
    assert inlined.binding("x").value.selector == program.binding("once").value
    assert inlined.binding("w").value.selector == program.binding("width_sel").value
    assert inlined.binding("y").value == program.binding("y").value
    assert reparsed(inlined) == inlined
    assert passes.inline_selectors(inlined) == inlined
    assert check_expects(inlined) == []
    for seq in (["a", "b", "a"], ["b"], ["a", "a", "b", "b", "a"]):
        assert_agree(program, inlined, seq)


# ---------------------------------------------------------------- rasp fmt --simplify

def fmt(capsys, *args):
    status = cli.main(["fmt", *map(str, args)])
    out, err = capsys.readouterr()
    return status, out, err


def test_fmt_simplify_prints_the_simplified_program(capsys, tmp_path):
    path = tmp_path / "noisy.rasp"
    path.write_text(drasp_noisy("logits"))
    status, out, _ = fmt(capsys, "--simplify", path)
    assert status == 0
    assert grammar.parse(out) == passes.simplify(grammar.load(path))
    assert fmt(capsys, "--simplify", "--check", path)[0] == 1


def test_fmt_simplify_writes_the_tables_it_makes(capsys, tmp_path, extracted):
    _, p = extracted["histogram"]
    path = tmp_path / "extracted.rasp"
    write_program(p, path)
    status, _, err = fmt(capsys, "--simplify", path)    # the merged bias is a new table
    assert status == 2 and "noise.b.folded" in err and "--write" in err   # refused
    assert fmt(capsys, "--simplify", "--write", path)[0] == 0
    assert grammar.load(path) == passes.simplify(p)
    assert fmt(capsys, "--simplify", "--check", path)[0] == 0
    assert fmt(capsys, "--simplify", path)[0] == 0


# ---------------------------------------------------------------- the traversal

def test_every_field_holding_nodes_is_declared_a_child():
    # a field typed as a node but not declared with `child()` would be skipped by every walk
    for cls in ir.Node.__subclasses__():
        typed = {f.name for f in attrs.fields(cls)
                 if any(word in str(f.type) for word in ("Node", "Matrix"))}
        assert {name for name, _ in ir.child_fields(cls)} == typed, cls.__name__
