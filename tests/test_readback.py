"""An MLP read back as a lookup (extractor/decompile/readback.py): classes, readings, the
printed node, and that the interpreter computes the classes the fit assumed."""

import math

import numpy as np

from extractor.decompile import readback as rb
from rasp_ir import nodes as ir
from rasp_ir import primitives as semantics


def test_numbered_by_first_and_cluster():
    classes, n = rb.numbered_by_first(np.array([7, 3, 7, 5]))
    assert n == 3 and classes.tolist() == [0, 1, 0, 2]
    vectors = np.array([[0.0, 0], [1, 1], [0.01, 0], [1, 1.02]])
    classes, n = rb.cluster(vectors, 0.1, np.array([1, 1, 5, 1]))
    assert n == 2 and classes.tolist() == [0, 1, 0, 1]


def _data(rng, n=2000):
    """A token in {a, b}, a fraction x["a"], and an output that is a vector per
    (token, x["a"] > 0.5) pair (three distinct vectors: (b, False) writes what (b, True) does)."""
    token = rng.integers(0, 2, n)
    frac = rng.random(n)
    X = np.stack([frac, 1 - frac], 1)
    table = {(0, False): [1.0, 0], (0, True): [0, 1.0], (1, False): [2.0, 2], (1, True): [2, 2.0]}
    out = np.array([table[(t, f > 0.5)] for t, f in zip(token, frac)])
    return token, X, out + rng.normal(0, 1e-3, out.shape)


def test_threshold_reading_is_the_interpreters_exists():
    rng = np.random.default_rng(0)
    _, X, out = _data(rng)
    variance = float(out.var(0).sum())
    found = rb.readings(ir.Ref("x"), "x", X, ("a", "b"), False, out, variance)
    nodes = {r.node.name: r for r in found}
    assert set(nodes) == {"harden", "exists"}
    reading = next(r for r in found if r.node.name == "exists" and r.node.params[0] == "a")
    assert reading.node.params == ("a", 0.5)         # a readable constant, where the step is
    same = semantics.apply("exists", reading.node.params, X, ("a", "b"))
    assert np.array_equal(np.asarray(same, dtype=int), reading.codes)


def test_read_back_prints_a_lookup_over_the_product():
    rng = np.random.default_rng(1)
    token, X, out = _data(rng)
    variance = float(out.var(0).sum())
    tok = rb.Reading(ir.Tokens(), ("a", "b", "c"), token, "token")
    above = rb.Reading(ir.Primitive("exists", (ir.Ref("x"),), ("a", 0.5)), (False, True),
                       (X[:, 0] > 0.5).astype(int), "x")
    groups = rb.combinations([tok, above], out, variance)
    assert groups[-1][1] == (tok, above) and groups[-1][0] > 0.99
    rep = rb.read_back("m1", (tok, above), out, 0.05 * np.sqrt(variance))
    assert isinstance(rep.node, ir.Lookup)
    assert rep.node.operand.name == "product"
    keys = dict(zip(rep.node.keys, rep.node.values))
    # "b" joins its two rows into one class; "c" is never reached: the commonest class
    assert keys["b,False"] == keys["b,True"] != keys["a,False"] != keys["a,True"]
    assert len(rep.basis) == 3 and rep.E.shape == (3, 2)
    common = keys["b,False"]
    assert keys["c,False"] == keys["c,True"] == common
    assert np.allclose(rep.E[keys["a,True"]], [0, 1], atol=1e-2)


def test_a_single_reading_with_a_class_per_value_is_the_reading_itself():
    rng = np.random.default_rng(2)
    _, X, _ = _data(rng)
    out = np.where(X[:, :1] > 0.5, [1.0, 0], [0, 1.0])
    node = ir.Primitive("exists", (ir.Ref("x"),), ("a", 0.5))
    above = rb.Reading(node, (False, True), (X[:, 0] > 0.5).astype(int), "x")
    rep = rb.read_back("m1", (above,), out, 0.01)
    assert rep.node == node and rep.basis == (False, True)
    assert np.allclose(rep.E, [[0, 1], [1, 0]])


def test_explained_is_the_share_the_group_means_leave():
    """The bincount grouping and the within-group identity give the share of the output's
    variance the combination means explain, as the direct residual does."""
    rng = np.random.default_rng(3)
    out = rng.normal(size=(500, 4))
    codes = [rng.integers(0, 3, 500), rng.integers(0, 2, 500)]
    share, inverse = rb.explained(codes, out, float(out.var(0).sum()))
    means, same = rb.combination_means(codes, out)
    direct = 1 - ((out - means[same]) ** 2).mean(0).sum() / out.var(0).sum()
    assert np.isclose(share, direct, atol=1e-12) and (inverse == same).all()
    assert len(means) == len(np.unique(codes[0] * 2 + codes[1]))


def test_many_readings_are_grouped_from_the_best_smaller_groups(monkeypatch):
    """With more than MAX_GROUPS triples, triples extend the BEAM best pairs: an output made of
    three of sixteen binary readings is still found, and triples outside the beam are not
    scored."""
    rng = np.random.default_rng(4)
    n = 4000
    codes = [rng.integers(0, 2, n) for _ in range(16)]
    found = [rb.Reading(ir.Ref(f"r{i}"), (0, 1), c, f"r{i}") for i, c in enumerate(codes)]
    assert math.comb(len(found), 3) > rb.MAX_GROUPS
    out = (4 * codes[3] + 2 * codes[7] + codes[11])[:, None] + 0.01 * rng.normal(size=(n, 1))
    groups = rb.combinations(found, out, float(out.var(0).sum()))
    best = max(groups, key=lambda g: g[0])
    assert {r.source for r in best[1]} == {"r3", "r7", "r11"} and best[0] > 0.99
    scored, real = [], rb.explained
    monkeypatch.setattr(rb, "explained",
                        lambda c, o, v, e=None: (scored.append(len(c)), real(c, o, v, e))[1])
    rb.combinations(found, out, float(out.var(0).sum()))
    pairs = math.comb(16, 2)
    assert scored.count(3) <= rb.BEAM * (16 - 2) < math.comb(16, 3)
    assert scored.count(2) == pairs and scored.count(1) == 16
