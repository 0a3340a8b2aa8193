"""The extractor's primitive library: every printed label is read back by the real parser and
run by the interpreter, and must compute exactly the table (times @hard_scale) or the MLP
output the primitive claims. Also: the new builtins' type errors."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import grammar
from extractor.decompile.primitives import (
    SPECIALS,
    MlpPrimitive,
    Specials,
    attention_primitives,
    bias_primitives,
    key_primitives,
    logit_primitives,
    mlp_pair_primitives,
    mlp_primitives,
    position_attention_primitives,
    position_key_primitives,
    position_logit_primitives,
    token_attention_primitives,
    token_logit_primitives,
    with_special_rows,
)
from extractor.tasks.vocabulary import Vocabulary
from rasp_ir import nodes as ir
from rasp_ir import primitives as semantics
from rasp_ir import types as T
from rasp_ir.diagnostics import RaspError
from rasp_ir.interpreter import evaluate
from rasp_ir.printer import literal, pretty

SCALE = 1e4
VOCABS = [Vocabulary(("0", "1")).tokens, Vocabulary(("a", "b", "c")).tokens]
POSITIONS = [tuple(range(n)) for n in range(1, 13)]
# softmax attention of each position to itself: a vec over the vocabulary, one-hot on the
# position's token (the other keys' weights, e^-10000, are exactly 0)
AGGREGATE = "aggregate(select(q=pos, k=pos, op=(k == q)) + select(k=pos, op=False), token)"
POS_AGGREGATE = AGGREGATE.replace("token)", "pos)")


def header(vocab, maxlen) -> str:
    return f"@vocab {{{', '.join(literal(v) for v in vocab)}}};\n@maxlen {maxlen};\n"


def table_of(program, name, sequence):
    kind = T.infer(program)[0][name]
    node = ir.ScoreScale(1.0, ir.Ref(name)) if isinstance(kind, T.Sel) else ir.Ref(name)
    return np.asarray(evaluate(program, [sequence], node)[0], dtype=float)


# ---------------------------------------------------------------- attention

def attention_cases():
    """(query side, key side, input, query basis, key basis, vocab, maxlen): sources whose
    rows at positions 0..len(basis)-1 are one-hot on the basis values in order."""
    cases = []
    for vocab in VOCABS:
        n = len(vocab)
        cases.append(("token", "token", list(vocab), vocab, vocab, vocab, n))
        agg = AGGREGATE
        cases.append((agg, agg, list(vocab), vocab, vocab, vocab, n))
        cases.append(("token", agg, list(vocab), vocab, vocab, vocab, n))
    for basis in POSITIONS:
        n = len(basis)
        cases.append(("pos", "pos", ["a"] * n, basis, basis, ("a",), n))
        cases.append((POS_AGGREGATE, POS_AGGREGATE, ["a"] * n, basis, basis, ("a",), n))
    # positions against tokens: nothing that needs both sides alike may apply
    vocab = VOCABS[0]
    cases.append(("pos", "token", list(vocab), tuple(range(len(vocab))), vocab, vocab,
                  len(vocab)))
    return cases


def test_the_aggregate_cases_are_vectors():
    program = grammar.parse(header(VOCABS[0], 6) + f"a = {AGGREGATE};")
    assert T.infer(program)[0]["a"] == T.Vec(VOCABS[0], dist=True)
    value = evaluate(program, [list(VOCABS[0])], ir.Ref("a"))[0]
    np.testing.assert_array_equal(value, np.eye(6))


def _case_id(case):
    q, k, _, qb, kb, _, _ = case
    short = {"token": "token", "pos": "pos"}
    return f"{short.get(q, 'vec')}[{len(qb)}]x{short.get(k, 'vec')}[{len(kb)}]"


def _special_pairs():
    prims = {p.name: p for p in attention_primitives()}
    return [with_special_rows(prims["diag"], prims["to_bos"]),
            with_special_rows(prims["offset1"], prims["to_sep"]),
            with_special_rows(prims["uniform"], prims["to_eos"])]


def check_left_out(program_text, name, sequence):
    """A primitive left out of some bases either fails to type-check there or selects
    nothing."""
    try:
        program = grammar.parse(program_text)
    except RaspError as exc:
        assert set(exc.codes) <= {"E201", "E210"}, exc
        return
    assert not table_of(program, name, sequence).any()


@pytest.mark.parametrize("case", attention_cases(), ids=_case_id)
def test_attention_labels_compute_their_matrices(case):
    q_side, k_side, sequence, q_basis, k_basis, vocab, maxlen = case
    prims = attention_primitives() + _special_pairs()
    lines = {i: f"s{i} = select(q={q_side}, k={k_side}, op={p.label()});"
             for i, p in enumerate(prims)}
    applied = [i for i, p in enumerate(prims) if p.matrix(q_basis, k_basis) is not None]
    program = grammar.parse(header(vocab, maxlen) + "\n".join(lines[i] for i in applied))
    assert applied
    for i in applied:
        p, name = prims[i], f"s{i}"
        # print → parse → the same IR
        assert program.binding(name).value.predicate == p.predicate(), p.name
        table = table_of(program, name, sequence)[:len(q_basis), :len(k_basis)]
        matrix = p.matrix(q_basis, k_basis)
        assert matrix.shape == (len(q_basis), len(k_basis))
        assert set(np.unique(matrix)) <= {0.0, 1.0}
        np.testing.assert_array_equal(table, matrix * SCALE, err_msg=p.name)
    for i in set(lines) - set(applied):
        if prims[i].special_rows and not set(q_basis) & set(SPECIALS.values):
            continue     # no special rows: the primitive would be its main part, left out
        check_left_out(header(vocab, maxlen) + lines[i], f"s{i}", sequence)


def test_attention_on_mixed_rows_is_bilinear():
    """On rows that are not one-hot (aggregates), a term scores q · matrix · kᵀ."""
    rng = np.random.default_rng(0)
    basis, n = tuple(range(7)), 7
    X, Y = rng.dirichlet(np.ones(7), n), rng.dirichlet(np.ones(7), n)
    prims = [p for p in attention_primitives() if p.matrix(basis, basis) is not None]
    bindings = [ir.Binding("x", _lookup(basis, X)), ir.Binding("y", _lookup(basis, Y))]
    bindings += [ir.Binding(f"s{i}", p.select(ir.Ref("y"), ir.Ref("x")))
                 for i, p in enumerate(prims)]
    program = ir.Program(bindings=tuple(bindings), vocab=("a",), maxlen=n)
    for i, p in enumerate(prims):
        table = table_of(program, f"s{i}", ["a"] * n)
        np.testing.assert_allclose(table, X @ p.matrix(basis, basis) @ Y.T * SCALE,
                                   rtol=1e-12, atol=1e-9, err_msg=p.name)


def test_attention_matrices_are_what_the_names_say():
    prims = {p.name: p for p in attention_primitives()}
    pos = tuple(range(6))
    i, j = np.indices((6, 6))
    assert not prims["uniform"].matrix(pos, pos).any()
    np.testing.assert_array_equal(prims["diag"].matrix(pos, pos), np.eye(6))
    for n in (1, 2, 3):      # the reference printed its offset-3 table as `k==q-2`
        np.testing.assert_array_equal(prims[f"offset{n}"].matrix(pos, pos), (j == i - n))
        assert prims[f"offset{n}"].label() == f"(k == q - {n})"
    np.testing.assert_array_equal(prims["same_parity"].matrix(pos, pos), (i - j) % 2 == 0)
    np.testing.assert_array_equal(prims["same_mod3"].matrix(pos, pos), (i - j) % 3 == 0)
    np.testing.assert_array_equal(prims["first"].matrix(pos, pos), j == 0)
    vocab = VOCABS[0]
    bos = prims["to_bos"].matrix(vocab, vocab)
    assert (bos[:, vocab.index("<bos>")] == 1).all() and bos.sum() == len(vocab)
    # token-only and position-only primitives stay where they make sense
    assert prims["to_bos"].matrix(pos, pos) is None
    assert all(prims[n].matrix(vocab, vocab) is None
               for n in ("first", "offset1", "same_parity"))
    assert prims["to_sep"].matrix(vocab, ("0", "1", "<bos>")) is None
    assert prims["diag"].matrix(pos, vocab) is None        # no value in common
    assert prims["offset3"].matrix((0, 1, 2), (0, 1, 2)) is None
    assert prims["same_parity"].matrix((False, True), (False, True)) is None
    with pytest.raises(ValueError):
        prims["diag"].matrix(None, pos)


def test_specials_can_be_renamed():
    special = Specials(bos="BOS", sep="SEP", eos="EOS", pad="PAD")
    vocab = ("x", "y", "BOS", "SEP", "EOS", "PAD")
    to_bos = next(p for p in key_primitives() if p.name == "to_bos")
    assert to_bos.label(special) == '(k == "BOS")'
    np.testing.assert_array_equal(to_bos.matrix(None, vocab, special), [0, 0, 1, 0, 0, 0])
    assert to_bos.matrix(None, vocab) is None      # "<bos>" is not there
    program = grammar.parse(header(vocab, 6) +
                            f"s = select(k=token, op={to_bos.label(special)});")
    assert program.binding("s").value.predicate == to_bos.predicate(special)
    np.testing.assert_array_equal(table_of(program, "s", list(vocab))[0], [0, 0, SCALE, 0, 0, 0])


def test_special_rows_replace_only_special_queries():
    diag_bos = _special_pairs()[0]
    vocab = VOCABS[0]
    m = diag_bos.matrix(vocab, vocab)
    for r, q in enumerate(vocab):
        expected = [float(k == "<bos>") if q in SPECIALS.values else float(k == q)
                    for k in vocab]
        np.testing.assert_array_equal(m[r], expected)
    assert diag_bos.matrix(tuple(range(4)), tuple(range(4))) is None    # no special rows
    with pytest.raises(ValueError):
        with_special_rows(key_primitives()[1], key_primitives()[2])


# ---------------------------------------------------------------- key-only terms

def key_cases():
    cases = []
    for vocab in VOCABS:
        agg = AGGREGATE
        cases += [("token", list(vocab), vocab, vocab), (agg, list(vocab), vocab, vocab)]
    for basis in POSITIONS:
        cases += [("pos", ["a"] * len(basis), basis, ("a",)),
                  (POS_AGGREGATE, ["a"] * len(basis), basis, ("a",))]
    return cases


def _key_id(case):
    return f"{case[0] if case[0] in ('token', 'pos') else 'vec'}[{len(case[2])}]"


@pytest.mark.parametrize("case", key_cases(), ids=_key_id)
def test_key_labels_compute_their_vectors(case):
    k_side, sequence, k_basis, vocab = case
    vector_key = k_side not in ("token", "pos")
    # `uniform` on a vector key: see test_uniform_key_term_on_a_vector
    prims = [p for p in key_primitives() if not (vector_key and p.uniform)]
    lines = {i: f"s{i} = select(k={k_side}, op={p.label()});" for i, p in enumerate(prims)}
    applied = [i for i, p in enumerate(prims) if p.matrix(None, k_basis) is not None]
    program = grammar.parse(header(vocab, len(sequence)) +
                            "\n".join(lines[i] for i in applied))
    for i in applied:
        p = prims[i]
        assert program.binding(f"s{i}").value.predicate == p.predicate(), p.name
        table = table_of(program, f"s{i}", sequence)
        # every query row is the same vector over the keys
        expected = np.broadcast_to(p.matrix(None, k_basis) * SCALE,
                                   (len(sequence), len(k_basis)))
        np.testing.assert_array_equal(table[:, :len(k_basis)], expected, err_msg=p.name)
    for i in set(lines) - set(applied):
        check_left_out(header(vocab, len(sequence)) + lines[i], f"s{i}", sequence)


def test_uniform_key_term_on_a_vector():
    vocab = VOCABS[0]
    uniform = key_primitives()[0]
    program = grammar.parse(header(vocab, 6) + f"s = select(k={AGGREGATE}, op={uniform.label()});")
    assert not table_of(program, "s", list(vocab)).any()


# ---------------------------------------------------------------- logits

def logit_cases():
    cases = []
    for vocab in VOCABS:
        agg = AGGREGATE
        cases += [("token", list(vocab), vocab, vocab), (agg, list(vocab), vocab, vocab)]
        basis = tuple(range(len(vocab)))
        cases.append(("pos", list(vocab), basis, vocab))
    return cases


def names_of(prims):
    return {p.name: p for p in prims}


@pytest.mark.parametrize("case", logit_cases(),
                         ids=lambda c: f"{c[0][:5]}[{len(c[2])}]")
def test_logit_labels_compute_their_tables(case):
    inp, sequence, inp_basis, vocab = case
    prims = logit_primitives()
    lines = [f"l{i} = project(inp={inp}, op={p.label()});" for i, p in enumerate(prims)]
    program = grammar.parse(header(vocab, len(sequence)) + "\n".join(lines))
    for i, p in enumerate(prims):
        assert program.binding(f"l{i}").value.predicate == p.predicate(), p.name
        table = table_of(program, f"l{i}", sequence)     # (positions, outputs)
        matrix = p.matrix(inp_basis, vocab)
        if matrix is None and p.none_rows:
            # no None among the inputs: the label's other branch, the plain diagonal
            matrix = names_of(prims)["diag"].matrix(inp_basis, vocab)
        if matrix is None:
            assert not table.any(), p.name
            continue
        np.testing.assert_array_equal(table, matrix * SCALE, err_msg=p.name)
    names = {p.name: p for p in prims}
    assert names["diag"].matrix(tuple(range(3)), VOCABS[0]) is None
    assert names["to_eos"].matrix(VOCABS[0], VOCABS[0])[:, VOCABS[0].index("<eos>")].all()


@pytest.mark.parametrize("name", [
    "zeros", "to_eos", "to_bos"])
@pytest.mark.parametrize("vocab", VOCABS, ids=len)
def test_bias_labels_compute_their_vectors(name, vocab):
    p = next(p for p in bias_primitives() if p.name == name)
    program = grammar.parse(header(vocab, 2) + f"l = project(op={p.label()});")
    assert program.binding("l").value.predicate == p.predicate()
    table = table_of(program, "l", list(vocab[:2]))
    np.testing.assert_array_equal(table, np.broadcast_to(p.matrix(None, vocab) * SCALE,
                                                         table.shape))


# ---------------------------------------------------------------- primitives over positions

def position_profiles(n):
    """Vectors over positions 0..n-1 that between them pick every parameter the position
    primitives read off a table: a spike at each c, a step up and down at each c, and a bump
    on each residue modulo 2, 3, 4."""
    k = np.arange(n)
    profiles = [(k == c) * 1.0 for c in range(n)]
    profiles += [(k >= c) * 1.0 for c in range(1, n)] + [(k < c) * 1.0 for c in range(1, n)]
    profiles += [(k % m == r) + 0.01 * k for m in (2, 3, 4) for r in range(m)]
    profiles += [0.5 * k - 1, -0.25 * k]          # ramps: numeric labels
    return profiles


def _distinct(prims):
    """One primitive per label, in order."""
    seen = {}
    for p in prims:
        seen.setdefault(p.label(), p)
    return list(seen.values())


def _run_labels(text, prims, line, sequence):
    """Parse `text` + one line per primitive (`line(i, p)`), check that each predicate reads
    back as the same IR, and return the program."""
    program = grammar.parse(text + "\n".join(line(i, p) for i, p in enumerate(prims)))
    for i, p in enumerate(prims):
        value = program.binding(f"s{i}").value
        assert value.predicate == p.predicate(), p.name
    return program


@pytest.mark.parametrize("n", [2, 5, 9])
def test_position_key_labels_compute_their_vectors(n):
    basis = tuple(range(n))
    prims = _distinct(p for v in position_profiles(n) for p in position_key_primitives(v, basis))
    prims = [p for p in prims if p.matrix(None, basis) is not None]
    assert {"at", "before", "from", "mod"} <= {p.name.rstrip("0123456789_") for p in prims} \
        or n == 2
    sequence = ["a"] * n
    program = _run_labels(header(("a",), n), prims,
                          lambda i, p: f"s{i} = select(k=pos, op={p.label()});", sequence)
    for i, p in enumerate(prims):
        expected = np.broadcast_to(p.scores(None, basis, SCALE), (n, n))
        np.testing.assert_array_equal(table_of(program, f"s{i}", sequence), expected,
                                      err_msg=p.label())


@pytest.mark.parametrize("n", [2, 5, 9])
def test_position_attention_labels_compute_their_matrices(n):
    basis = tuple(range(n))
    rng = np.random.default_rng(n)
    tables = [np.broadcast_to(v, (n, n)) for v in position_profiles(n)]
    tables += [rng.normal(size=(n, n)) + 5 * (np.arange(n)[None, :] == np.arange(n)[:, None] - c)
               for c in range(n)]
    prims = _distinct(p for m in tables for p in position_attention_primitives(m, basis, basis))
    prims = [p for p in prims if p.matrix(basis, basis) is not None]
    assert {"(k < q)", "(k <= q)"} <= {p.label() for p in prims}
    sequence = ["a"] * n
    program = _run_labels(header(("a",), n), prims,
                          lambda i, p: f"s{i} = select(q=pos, k=pos, op={p.label()});",
                          sequence)
    for i, p in enumerate(prims):
        np.testing.assert_array_equal(table_of(program, f"s{i}", sequence),
                                      p.scores(basis, basis, SCALE), err_msg=p.label())
    if n == 9:      # the offset read off the table, beyond the library's fixed 1 … 3
        assert {"(k == q - 4)", "(k == q - 5)"} <= {p.label() for p in prims}


def test_position_attention_with_token_queries_reads_the_key_alone():
    vocab, n = VOCABS[0], len(VOCABS[0])
    basis = tuple(range(n))
    prims = _distinct(p for v in position_profiles(n)
                      for p in position_attention_primitives(np.broadcast_to(v, (n, n)),
                                                             vocab, basis))
    prims = [p for p in prims if p.matrix(vocab, basis) is not None]
    assert prims and all(p.name.startswith("key_") for p in prims)
    program = _run_labels(header(vocab, n), prims,
                          lambda i, p: f"s{i} = select(q=token, k=pos, op={p.label()});",
                          list(vocab))
    for i, p in enumerate(prims):
        matrix = p.matrix(vocab, basis)
        assert (matrix == matrix[0]).all()       # the same for every query
        np.testing.assert_array_equal(table_of(program, f"s{i}", list(vocab)),
                                      p.scores(vocab, basis, SCALE), err_msg=p.label())
    # positions on neither side, or only on the query side: nothing over positions
    assert position_attention_primitives(np.ones((n, n)), basis, vocab) == []
    assert position_key_primitives(np.ones(n), vocab) == []


@pytest.mark.parametrize("vocab", VOCABS, ids=len)
def test_position_logit_labels_compute_their_tables(vocab):
    n = 7
    basis = tuple(range(n))
    tables = []
    for o in range(len(vocab)):
        for v in position_profiles(n):
            m = np.zeros((n, len(vocab)))
            m[:, o] = v
            tables.append(m)
    prims = _distinct(p for m in tables for p in position_logit_primitives(m, basis, vocab))
    prims = [p for p in prims if p.matrix(basis, vocab) is not None]
    assert len(prims) > 2 * len(vocab)
    sequence = ["a" if "a" in vocab else "0"] * n
    program = grammar.parse(header(vocab, n) + "\n".join(
        f"s{i} = project(inp=pos, op={p.label()});" for i, p in enumerate(prims)))
    for i, p in enumerate(prims):
        assert program.binding(f"s{i}").value.predicate == p.predicate(), p.name
        np.testing.assert_array_equal(table_of(program, f"s{i}", sequence),
                                      p.scores(basis, vocab, SCALE), err_msg=p.label())
    assert position_logit_primitives(np.ones((len(vocab), len(vocab))), vocab, vocab) == []


def test_position_parameters_come_from_the_table():
    basis = tuple(range(8))
    k = np.arange(8)
    labels = [p.label() for p in position_key_primitives((k >= 5) * 2.0 - 1, basis)]
    assert labels[:2] == ["(k == 5)", "(k >= 5)"]
    labels = [p.label() for p in position_key_primitives(-k * 1.0, basis)]
    assert "(k == 0)" not in labels          # `first` is already in key_primitives
    labels = [p.label() for p in position_key_primitives((k % 3 == 2) * 1.0, basis)]
    assert "(k % 3 == 2)" in labels
    table = np.zeros((8, 3))
    table[:3, 2] = 4.0
    labels = [p.label() for p in position_logit_primitives(table, basis, ("a", "b", "c"))]
    assert labels[0] == '(out == "c")' and '(out == "c" and inp < 3)' in labels


def test_linear_position_labels_are_fitted_and_readable():
    basis = tuple(range(10))
    k = np.arange(10)
    ramps = [p for p in position_key_primitives(0.123456 * k + 3, basis) if p.numeric]
    assert [p.label() for p in ramps] == ["(0.12 * k)"]
    np.testing.assert_allclose(ramps[0].scores(None, basis, SCALE), 0.12 * k)
    table = np.stack([0.5 * k - 20, np.full(10, 3.0), np.zeros(10)], 1)
    lines = [p for p in position_logit_primitives(table, basis, ("a", "b", "c")) if p.numeric]
    assert [p.label() for p in lines] == ['((out == "a") * (0.5 * inp - 20.0) + (out == "b") * 3.0)']
    np.testing.assert_allclose(lines[0].scores(basis, ("a", "b", "c"), SCALE), table, atol=1e-9)


# ---------------------------------------------------------------- MLP primitives

MLP_BASES = [VOCABS[0], VOCABS[1], tuple(range(5)), ("a", "b", None)]


def _lookup(basis, rows) -> ir.Node:
    matrix = ir.Matrix(tuple(range(len(rows))), tuple(basis),
                       tuple(tuple(float(v) for v in r) for r in rows))
    return ir.Primitive("lookup", (ir.Indices(), matrix))


def _run_all(prims, basis, rows):
    """Every primitive's node on a variable whose rows are `rows`, in one program."""
    bindings = [ir.Binding("x", _lookup(basis, rows))]
    bindings += [ir.Binding(f"m{i}", p.node(ir.Ref("x"))) for i, p in enumerate(prims)]
    program = ir.Program(bindings=tuple(bindings), vocab=("a",), maxlen=len(rows))
    types = T.infer(program)[0]
    out = []
    for i, p in enumerate(prims):
        value = np.asarray(evaluate(program, [["a"] * len(rows)], ir.Ref(f"m{i}"))[0])
        out.append((value, types[f"m{i}"]))
    return out


def _encoding(value, kind):
    """The interpreter's value as rows over the type's basis (one-hot for a cat)."""
    if isinstance(kind, T.Cat):
        index = {(type(v), v): i for i, v in enumerate(kind.values)}
        codes = [index[(type(v), v)] for v in value.tolist()]
        return np.eye(len(kind.values))[codes]
    return value


def rows_strategy(width):
    row = st.one_of(
        st.lists(st.floats(0, 1), min_size=width, max_size=width),            # ties, zeros
        st.lists(st.sampled_from([0.0, 0.1, 0.5, 0.05, 1.0]), min_size=width, max_size=width),
        st.integers(0, width - 1).map(lambda i: [float(j == i) for j in range(width)]))
    return st.lists(row, min_size=1, max_size=8).map(
        lambda rows: [[v / sum(r) for v in r] if sum(r) > 0 else [1 / width] * width
                      for r in rows])


@pytest.mark.parametrize("basis", MLP_BASES, ids=lambda b: f"{type(b[0]).__name__}[{len(b)}]")
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_mlp_primitives_equal_the_interpreter(basis, data):
    rows = data.draw(rows_strategy(len(basis)), label="rows")
    if data.draw(st.booleans(), label="unnormalised"):      # any real vectors, too
        rows = [[3 * v - 1 for v in r] for r in rows]
    prims = mlp_primitives(basis, pure_thresholds=(0.9, 0.5), exists_thresholds=(0.1, 0.5))
    X = np.asarray(rows)
    for p, (value, kind) in zip(prims, _run_all(prims, basis, rows)):
        assert T.basis_of(kind) == p.output_basis(basis), p.name
        expected = p.apply(X, basis)
        assert expected.shape == (len(rows), len(p.output_basis(basis)))
        np.testing.assert_allclose(_encoding(value, kind), expected, rtol=1e-12, atol=0,
                                   err_msg=p.label())


def _row_by_row(name, params, row, basis, other=None):
    """One output of `name` read off one row, as rasp_ir/primitives.py's docstring states it
    (plain Python: an oracle written apart from the vectorised functions)."""
    entry = dict(zip(basis, row))
    if name == "harden":
        return basis[row.index(max(row))]
    if name == "sharpen":
        powered = [max(v, 0) ** params[0] for v in row]
        return [v / max(sum(powered), 1e-300) for v in powered]
    if name == "exists":
        return entry[params[0]] > params[1]
    if name == "is_pure":
        best = row.index(max(row))
        return basis[best] if row[best] > params[0] else None
    if name in ("balance", "diff"):
        a, b, setting = params
        d = entry[a] - entry[b]
        if name == "balance":
            return 0 if abs(d) <= setting else (1 if d > 0 else -1)
        return max(-setting, min(setting, math.floor(setting * d + 0.5)))
    if name == "erase":
        return 1
    return [u * v for u in row for v in other]


@pytest.mark.parametrize("basis", MLP_BASES, ids=lambda b: f"{type(b[0]).__name__}[{len(b)}]")
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_shared_semantics_equal_a_row_by_row_reading(basis, data):
    """The functions the interpreter and the library share compute, on any rows, what the
    semantics say row by row; the library's rows are their one-hot encoding."""
    rows = data.draw(rows_strategy(len(basis)), label="rows")
    if data.draw(st.booleans(), label="unnormalised"):
        rows = [[3 * v - 1 for v in r] for r in rows]
    other = data.draw(st.lists(st.floats(-1, 1), min_size=2, max_size=2), label="y")
    X, Y = np.asarray(rows), np.asarray([other] * len(rows))
    prims = mlp_primitives(basis, pure_thresholds=(0.9, 0.5), exists_thresholds=(0.1, 0.5))
    prims += [p for p in mlp_pair_primitives(basis, (0, 1)) if p.name == "product"]
    for p in prims:
        if p.name == "no_op":
            continue
        out_basis = semantics.output_basis(p.name, p.params, basis, (0, 1))
        got = semantics.apply(p.name, p.params, X, basis, Y)
        library = p.apply(X, basis, Y, (0, 1))
        for i, row in enumerate(rows):
            want = _row_by_row(p.name, p.params, row, basis, other)
            if p.name in semantics.CATEGORICAL:
                assert out_basis[got[i]] == want and type(out_basis[got[i]]) is type(want), \
                    (p.label(), row)
                assert library[i].tolist() == [float(j == got[i]) for j in range(len(out_basis))]
            else:
                np.testing.assert_allclose(got[i], want, rtol=1e-12, atol=1e-300,
                                           err_msg=p.label())
                np.testing.assert_array_equal(library[i], got[i])


def test_mlp_candidates_follow_the_basis():
    names = [p.name for p in mlp_primitives(VOCABS[0])]
    assert names[:3] == ["erase", "no_op", "harden"]
    assert names.count("balance") == 1 and names.count("diff") == 1      # the pair ("0", "1")
    assert names.count("exists") == len(VOCABS[0])
    big = mlp_primitives(tuple(range(40)))
    assert "exists" not in {p.name for p in big} and "balance" not in {p.name for p in big}
    abc = [p for p in mlp_primitives(VOCABS[1]) if p.name == "balance"]
    assert [p.params[:2] for p in abc] == [("a", "b"), ("a", "c"), ("b", "c")]


def test_mlp_semantics_at_the_edges():
    basis = ("a", "b", "<bos>")
    prim = {p.label(): p for p in mlp_primitives(basis, exists_thresholds=(0.5,),
                                                 pure_thresholds=(0.6,))}
    X = np.array([[0.5, 0.5, 0.0], [0.75, 0.25, 0.0], [0.25, 0.75, 0.0], [0.55, 0.45, 0.0]])
    pure = prim["is_pure(x, 0.6)"].apply(X, basis)          # basis a, b, <bos>, None
    assert pure.argmax(1).tolist() == [3, 0, 1, 3]
    balance = prim['balance(x, "a", "b", 1e-06)'].apply(X, basis)     # over -1, 0, 1
    assert (balance.argmax(1) - 1).tolist() == [0, 1, -1, 1]
    diff = prim['diff(x, "a", "b", 5)'].apply(X, basis)    # round(5 · (a − b)), halves up
    assert (diff.argmax(1) - 5).tolist() == [0, 3, -2, 1]
    exists = prim['exists(x, "a", 0.5)'].apply(X, basis)   # strictly above
    assert exists.argmax(1).tolist() == [0, 1, 0, 1]
    assert prim["harden(x)"].apply(X, basis).argmax(1).tolist() == [0, 0, 1, 0]  # ties: first
    assert prim["erase(x)"].apply(X, basis).tolist() == [[1.0]] * 4


@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_product_equals_the_interpreter(data):
    left, right = ("a", "b", "<bos>"), (0, 1)
    x_rows = data.draw(rows_strategy(3).filter(lambda r: len(r) >= 2), label="x")
    y_rows = data.draw(st.lists(rows_strategy(2).map(lambda r: r[0]), min_size=len(x_rows),
                                max_size=len(x_rows)), label="y")
    (product,) = [p for p in mlp_pair_primitives(left, right) if p.name == "product"]
    bindings = (ir.Binding("x", _lookup(left, x_rows)), ir.Binding("y", _lookup(right, y_rows)),
                ir.Binding("p", product.node(ir.Ref("x"), ir.Ref("y"))))
    program = ir.Program(bindings=bindings, vocab=("a",), maxlen=len(x_rows))
    value = evaluate(program, [["a"] * len(x_rows)], ir.Ref("p"))[0]
    kind = T.infer(program)[0]["p"]
    assert T.basis_of(kind) == product.output_basis(left, right) == \
        ("a,0", "a,1", "b,0", "b,1", "<bos>,0", "<bos>,1")
    np.testing.assert_allclose(value, product.apply(np.array(x_rows), left,
                                                    np.array(y_rows), right), rtol=1e-12)


def test_product_of_categorical_values_is_the_pair():
    src = header(("a", "b"), 3) + "p = product(token, pos);\n@output p;\n"
    program = grammar.parse(src)
    assert T.infer(program)[0]["p"] == T.Cat(("a,0", "a,1", "a,2", "b,0", "b,1", "b,2"))
    assert grammar.parse(pretty(program)) == program
    value = evaluate(program, [["b", "a", "b"]], ir.Ref("p"))[0]
    assert value.tolist() == ["b,0", "a,1", "b,2"]
    product = MlpPrimitive("product", "", arity=2)
    one_hot = product.apply(np.eye(2)[[1, 0, 1]], ("a", "b"), np.eye(3), (0, 1, 2))
    assert one_hot.argmax(1).tolist() == [3, 1, 5]
    assert "product" not in [p.name for p in mlp_pair_primitives(tuple(range(200)),
                                                                 tuple(range(200)))]


def test_mlp_lines_print_and_parse_as_named():
    """Each candidate's line `name = call;` is valid source that keeps its name and node."""
    vocab = VOCABS[0]
    prims = mlp_primitives(vocab)
    lines = ["a1 = aggregate(select(k=token, op=True) + select(k=token, op=True), token);"]
    seen = set()
    for p in prims:
        name = p.variable_name("a1")
        if p.name == "no_op" or name in seen:
            continue
        seen.add(name)
        lines.append(f"{name} = {p.label('a1')};")
    program = grammar.parse(header(vocab, 4) + "\n".join(lines))
    by_name = {b.name: b.value for b in program.bindings}
    for p in prims:
        name = p.variable_name("a1")
        if p.name == "no_op":
            assert name == "a1" and p.node(ir.Ref("a1")) == ir.Ref("a1")
        elif by_name[name].params == p.params:
            assert by_name[name] == p.node(ir.Ref("a1")), p.name
    assert grammar.parse(pretty(program)) == program
    assert MlpPrimitive("product", "", arity=2).variable_name("a1", "a2") == "a1_x_a2"


# ---------------------------------------------------------------- the new builtins

BASE = header(("a", "b", "<bos>"), 4) + "@causal;\n" + \
    "a1 = aggregate(select(k=token, op=True) + select(k=token, op=True), token);\n"


@pytest.mark.parametrize("line, code, words", [
    ('x = balance(a1, "z", "a");', "E201", ["'z'", "not in the basis", "'a', 'b', '<bos>'"]),
    ('x = diff(a1, "a", "zz", 5);', "E201", ["'zz'", "not in the basis"]),
    ('x = balance(a1, "a", "a");', "E201", ["two different basis values"]),
    ('x = balance(a1, "a", "b", -1);', "E205", ["tolerance", "at least 0"]),
    ('x = balance(a1, tokens, "b");', "E205", ["basis value"]),
    ('x = diff(a1, "a", "b", 0);', "E205", ["bins", "at least 1"]),
    ('x = diff(a1, "a", "b", 1.5);', "E205", ["bins"]),
    ('x = is_pure(a1, "high");', "E205", ["threshold", "number"]),
    ('x = is_pure(numerical(indicator(tokens == "a")), 0.5);', "E201", ["known basis"]),
    ('x = product(a1);', "E240", ["y"]),
    ('x = product(a1, numerical(indicator(tokens == "a")));', "E201", ["known basis"]),
    ('x = erase(a1, 2);', "E240", ["at most 1"]),
])
def test_new_builtins_report_type_errors(line, code, words):
    with pytest.raises(RaspError) as info:
        grammar.parse(BASE + line)
    assert code in info.value.codes
    message = " ".join(d.message + " " + (d.hint or "") for d in info.value.diagnostics)
    for word in words:
        assert word in message, message


def test_new_builtins_in_a_program():
    src = BASE + '''pure = is_pure(a1, 0.5);
b = balance(a1, "a", "b");
d = diff(a1, "a", "b");
e = erase(a1);
@output pure;
'''
    program = grammar.parse(src)
    assert grammar.parse(pretty(program)) == program
    assert 'balance(a1, "a", "b", 1e-06)' in pretty(program)    # defaults are printed
    types = T.infer(program)[0]
    assert types["pure"] == T.Cat(("a", "b", "<bos>", None))
    assert types["b"] == T.Cat((-1, 0, 1)) and types["d"] == T.Cat(tuple(range(-5, 6)))
    assert types["e"] == T.Cat((1,))
    get = lambda name: evaluate(program, [["a", "a", "b", "b"]], ir.Ref(name))[0].tolist()
    assert get("pure") == ["a", "a", "a", None]       # 1, 1, 2/3, 1/2 of the mass on "a"
    assert get("b") == [1, 1, 1, 0]
    assert get("d") == [5, 5, 2, 0]                   # 5 · 1/3 = 1.67 → 2
    assert get("e") == [1, 1, 1, 1]


# ---------------------------------------------------------------- over token ids

NUMERALS = Vocabulary(tuple(str(i) for i in range(12))).tokens     # "0" … "11", then specials


def _sort_like(vocab):
    """A sort head's scores: the nearest key above the query highest, keys below low; a
    special query prefers the smallest key."""
    n = 12
    m = np.full((len(vocab), len(vocab)), -1.0)
    for q in range(len(vocab)):
        for k in range(len(vocab)):
            if q >= n:
                m[q, k] = 10.0 - 0.5 * k
            elif k > q:
                m[q, k] = 10.0 - 1.5 * (k - q)
    return m


def test_token_attention_labels_compute_their_tables():
    vocab = NUMERALS
    m = _sort_like(vocab)
    prims = token_attention_primitives(m, vocab, vocab, vocab)
    labels = [p.label() for p in prims]
    assert labels[0] == "((token_id(k) > token_id(q)) * (24 - 1.5 * token_id(k)))", labels
    assert any(label.startswith("(24 - 1.5 * token_id(k) if q in [") for label in labels)
    program = _run_labels(header(vocab, len(vocab)), prims,
                          lambda i, p: f"s{i} = select(q=token, k=token, op={p.label()});",
                          list(vocab))
    for i, p in enumerate(prims):
        np.testing.assert_array_equal(table_of(program, f"s{i}", list(vocab)),
                                      p.scores(vocab, vocab, SCALE), err_msg=p.label())
    # the mirror image: the nearest key below
    prims = token_attention_primitives(m[::-1, ::-1].copy(), vocab, vocab, vocab)
    assert not any("token_id(k) > token_id(q)" in p.label() for p in prims)


def test_token_logit_labels_compute_their_tables():
    vocab = NUMERALS
    m = np.zeros((len(vocab), len(vocab)))
    for i in range(11):
        m[i, i + 1] = 3.0
    prims = token_logit_primitives(m, vocab, vocab, vocab)
    assert prims[0].label() == "(token_id(out) == token_id(inp) + 1)"
    program = grammar.parse(header(vocab, len(vocab)) + "\n".join(
        f"s{i} = project(inp=token, op={p.label()});" for i, p in enumerate(prims)))
    for i, p in enumerate(prims):
        assert program.binding(f"s{i}").value.predicate == p.predicate(), p.name
        np.testing.assert_array_equal(table_of(program, f"s{i}", list(vocab)),
                                      p.scores(vocab, vocab, SCALE), err_msg=p.label())
    assert np.array_equal(prims[0].matrix(vocab, vocab)[:11] > 0, m[:11] > 0)


def test_token_primitives_need_numerals_in_order():
    letters = Vocabulary(tuple("abcdefghijkl")).tokens
    m = np.ones((len(letters), len(letters)))
    assert token_attention_primitives(m, letters, letters, letters) == []
    assert token_logit_primitives(m, letters, letters, letters) == []
    assert token_logit_primitives(m, NUMERALS, NUMERALS, None) == []


def _pair_case(primitive, left, right, xs, ys):
    """A two-input primitive on the values `xs` over `left` and `ys` over `right`: (its
    output rows from `apply`, the interpreter's values of its node on the same inputs)."""
    X = np.eye(len(left))[[left.index(v) for v in xs]]
    Y = np.eye(len(right))[[right.index(v) for v in ys]]
    bindings = (ir.Binding("x", ir.Primitive("harden", (_lookup(left, X.tolist()),))),
                ir.Binding("y", ir.Primitive("harden", (_lookup(right, Y.tolist()),))),
                ir.Binding("r", primitive.node(ir.Ref("x"), ir.Ref("y"))))
    program = ir.Program(bindings=bindings, vocab=("a",), maxlen=len(xs))
    value = evaluate(program, [["a"] * len(xs)], ir.Ref("r"))[0]
    return primitive.apply(X, left, Y, right), value


def test_equal_compares_two_categorical_values_as_the_interpreter_does():
    left, right = ("0", "1", "2", "<bos>"), ("1", "2", "3")
    (equal,) = [p for p in mlp_pair_primitives(left, right) if p.name == "equal"]
    rows, value = _pair_case(equal, left, right, ["0", "1", "2", "<bos>", "2"],
                             ["1", "1", "3", "2", "2"])
    assert equal.output_basis(left, right) == (False, True)
    assert rows.argmax(1).tolist() == [0, 1, 0, 0, 1]
    assert equal.label("token", "end") == "token == end"
    assert equal.variable_name("token", "end") == "token_is_end"
    assert value.tolist() == [False, True, False, False, True]
    # bases with fewer than two values in common: nothing to compare
    assert "equal" not in [p.name for p in mlp_pair_primitives(("a", "b"), (0, 1))]


def test_special_or_routes_as_the_interpreter_does():
    left, right = ("0", "1", "2", "<bos>"), ("2", "<bos>", "<sep>")
    (route,) = [p for p in mlp_pair_primitives(left, right) if p.name == "special_or"]
    rows, value = _pair_case(route, left, right, ["0", "1", "2", "<bos>", "1"],
                             ["2", "<bos>", "<sep>", "2", "2"])
    basis = route.output_basis(left, right)
    assert basis == ("0", "1", "2", "<bos>", "<sep>")
    assert [basis[i] for i in rows.argmax(1)] == ["0", "<bos>", "<sep>", "<bos>", "1"]
    assert route.label("token", "head").startswith("head if head in [")
    assert value.tolist() == ["0", "<bos>", "<sep>", "<bos>", "1"]
    # y never special, or x never plain: nothing to route
    assert "special_or" not in [p.name for p in mlp_pair_primitives(left, ("1", "2"))]
    assert "special_or" not in [p.name for p in mlp_pair_primitives(("<bos>",), right)]


def test_a_routed_reading_takes_the_basis_the_interpreter_types_it_with():
    """`tokens if tokens in [specials] else indices` ranges, for the type checker, over every
    token and position, not only the specials and positions the data reaches: its rows are
    moved onto that basis, so a table over it has one row per value the interpreter expects
    (bce_D3's extraction once stopped on E212 here)."""
    from extractor.decompile.replace import typed_rows
    vocab = ("a", "b", "<bos>", "<eos>")
    program = ir.Program(bindings=(), vocab=vocab, maxlen=3)
    left, right = tuple(range(3)), vocab
    (route,) = [p for p in mlp_pair_primitives(left, right) if p.name == "special_or"]
    node = route.node(ir.Indices(), ir.Tokens())
    X = np.eye(3)[[0, 1, 2]]
    Y = np.eye(4)[[0, 2, 3]]                 # a, <bos>, <eos>
    rows = route.apply(X, left, Y, right)
    moved, basis = typed_rows(program, node, rows, route.output_basis(left, right))
    assert set(basis) == set(left) | set(vocab) and len(basis) == 7
    value = evaluate(program, [["a", "<bos>", "<eos>"]], node)[0]
    assert [basis[i] for i in moved.argmax(1)] == value.tolist() == [0, "<bos>", "<eos>"]
    assert moved.sum() == 3                  # the tokens never routed keep empty columns


def test_a_sum_is_ranked_by_the_decisions_it_reproduces_through_the_logits():
    """The sum search scores a candidate by what the program would decide with the candidate's
    written vector in place of the MLP's output: the logits read it through one projection,
    so the rest of the logits are the program's less that part. Decisions are the model's;
    a sequence agrees when every scored position does."""
    from types import SimpleNamespace

    from extractor.decompile.replace import DecisionCheck
    program = grammar.parse("""
@vocab {"a", "b"};
@maxlen 4;
@attention "softmax";
m = aggregate(s=select(k=tokens, q=tokens, op=(k == q)), v=tokens);
logits = project(inp=tokens, op=matrix(cols=["a", "b"], rows={"a": [1, 0], "b": [0, 1]}))
       + project(inp=m, op=matrix(cols=["a", "b"], rows={"a": [0, 3], "b": [3, 0]}));
@output logits;
""")
    sequences = [["a", "b"], ["b", "b", "a"]]
    # the whole program decides the other token at every position: m is one-hot on the
    # position's own token, and its part (3) outweighs the token's (1)
    flip = {"a": 1, "b": 0}
    model = [np.array([flip[t] for t in s]) for s in sequences]
    model[1][2] = 0                                        # the model disagrees here once
    scored = [np.array([True, True]), np.array([False, True, True])]
    judge = SimpleNamespace(task=SimpleNamespace(mode="lm"), sets={"0-4": [
        (s, d, d, k) for s, d, k in zip(sequences, model, scored)]})
    out = np.concatenate(evaluate(program, sequences, ir.Ref("m")))
    check = DecisionCheck.of(program, "m", judge, out)
    assert check.positions.tolist() == [0, 1, 2, 3, 4]
    assert check.agreement(out[check.positions]) == (0.5, 0.75)
    # with nothing written, the token's own part decides: the token itself
    assert check.agreement(np.zeros_like(out)) == (0.0, 0.25)
    # a sequence's unscored position does not count against it
    model[1][0] = 1 - model[1][0]
    assert DecisionCheck.of(program, "m", judge, out).agreement(out) == (0.5, 0.75)
