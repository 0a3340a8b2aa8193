"""An MLP read as a routed lookup (extractor/decompile/routes.py): the search finds a count's
routes from the model's decisions, the fitted rows reproduce them, the printed lines run in
the interpreter as the search's classes, and the logit readouts a route's lines need (a vote
per class, a routed value whose None votes for nothing) compute their tables."""
from types import SimpleNamespace

import numpy as np
import pytest

import grammar
from extractor.decompile import routes
from extractor.decompile.primitives import (
    silent_none,
    token_logit_primitives,
    vote_logit_primitives,
)
from rasp_ir import nodes as ir
from rasp_ir.interpreter import Interpreter, evaluate
from rasp_ir.printer import expr, literal

N = 12
VOCAB = tuple(str(i) for i in range(N)) + ("<bos>", "<sep>", "<eos>")
INDEX = {t: i for i, t in enumerate(VOCAB)}


def counts(rng, n_sequences=120):
    """Count-like sequences `<bos> s e <sep> s … e` (the prompt `<bos> s e` not scored) and,
    per position, a head that holds the
    prompt's numbers above the token (both at <sep>, the end more; <bos> when none is above),
    and the model's decision: after <sep> the start, then the next number, then <eos>."""
    tokens, head, decisions, starts, scored = [], [], [], [], []
    for _ in range(n_sequences):
        s = int(rng.integers(0, N - 2))
        e = int(rng.integers(s + 1, N))
        seq = ["<bos>", str(s), str(e), "<sep>"] + [str(v) for v in range(s, e + 1)]
        starts.append(len(tokens))
        scored += [False] * 3 + [True] * (len(seq) - 3)      # the prompt is not scored
        for t in seq:
            row = np.zeros(len(VOCAB))
            above = [v for v in (s, e) if t in ("<sep>", "<bos>") or
                     (t.isdigit() and v > int(t))]
            if t == "<bos>" or not above:
                row[INDEX["<bos>"]] = 1.0
            elif t == "<sep>":            # more on the end: its largest entry is not the start
                row[INDEX[str(s)]], row[INDEX[str(e)]] = 0.3, 0.7
            else:
                row[[INDEX[str(v)] for v in above]] = 1.0 / len(above)
            head.append(row)
            tokens.append(t)
            if t == "<sep>":
                decisions.append(INDEX[str(s)])
            elif t.isdigit() and int(t) < e:
                decisions.append(INDEX[str(int(t) + 1)])
            else:
                decisions.append(INDEX["<eos>"])
    return tokens, np.array(head), np.array(decisions), np.array(starts), np.array(scored)


def setting(seed=0):
    rng = np.random.default_rng(seed)
    tokens, head, model, starts, scored = counts(rng)
    onehot = np.eye(len(VOCAB))[[INDEX[t] for t in tokens]]
    # the MLP writes the decision's direction (the logits read it as it is), with noise
    out = 5.0 * np.eye(len(VOCAB))[model] + 0.3 * rng.normal(size=(len(model), len(VOCAB)))
    rows = {ir.Tokens(): (onehot, VOCAB), ir.Ref("head"): (head, VOCAB)}
    names = {ir.Tokens(): "token", ir.Ref("head"): "head"}
    check = SimpleNamespace(
        positions=np.arange(len(model)), reader=np.eye(len(VOCAB)),
        scored=scored, starts=starts,
        same_at=lambda where, part: (part.argmax(1) == model[where]) | ~scored[where])
    return rows, names, out, model, check, tokens


def test_a_counts_mlp_is_read_as_a_route_from_the_decisions():
    rows, names, out, model, check, _ = setting()
    routers, sources = routes.candidates(rows, {ir.Tokens()}, names)
    found = routes.routes(routers, sources, routes.Decisions(check, out))
    agreement, route = found[0]
    assert agreement == 1.0
    # it reads whether the token is special and whether the head holds anything above it
    printed = [expr(r.node) for r in route.readings]
    assert any(p.startswith("tokens in") for p in printed), printed
    assert any(p.endswith("== None") for p in printed), printed
    passed = {sources[s].name for s in route.sources if s >= 0}
    assert "token" in passed                                   # the next number
    assert any(p.startswith("next_above_head") for p in passed)   # the start, after <sep>
    assert -1 in route.sources                                 # the end: a constant
    # the rows fitted on every position decide every scored position as the model does
    tables = routes.fit(route, sources, out)
    decided = routes.written(route, sources, tables).argmax(1)
    assert (decided == model)[check.scored].all()


def test_a_route_of_one_class_is_no_route():
    rows, names, out, model, check, _ = setting()
    routers, sources = routes.candidates(rows, {ir.Tokens()}, names)
    everywhere = routes.Part("one", ir.Const(True), (False, True),
                             np.ones(len(model), dtype=np.int64))
    assert routes.route_of((everywhere,), sources, routes.Decisions(check, out)) is None


HEAD = """@vocab {%s};
@maxlen 20;
@causal;
@bos "<bos>";
@attention "softmax";
head = aggregate(s=select(k=tokens, q=tokens, op=(token_id(k) < %d and
    (token_id(k) > token_id(q) or q == "<sep>")) * 50 + (k == "<bos>") * 25), v=tokens);
""" % (", ".join(literal(v) for v in VOCAB), N)


def test_the_route_lines_run_in_the_interpreter_as_the_search_classed_them():
    # the head as a program computes it (the prompt's numbers above the query; both at
    # <sep>), its rows read off the interpreter, so the printed lines see the same values
    _, _, _, model, check, tokens = setting(1)
    sequences = [tokens[a:b] for a, b in zip(check.starts, list(check.starts[1:]) +
                                              [len(tokens)])]
    head = np.concatenate(evaluate(grammar.parse(HEAD + "@output head;"), sequences,
                                   ir.Ref("head")))
    rng = np.random.default_rng(2)
    out = 5.0 * np.eye(len(VOCAB))[model] + 0.3 * rng.normal(size=(len(model), len(VOCAB)))
    rows = {ir.Tokens(): (np.eye(len(VOCAB))[[INDEX[t] for t in tokens]], VOCAB),
            ir.Ref("head"): (head, VOCAB)}
    routers, sources = routes.candidates(rows, {ir.Tokens()},
                                         {ir.Tokens(): "token", ir.Ref("head"): "head"})
    agreement, route = routes.routes(routers, sources, routes.Decisions(check, out))[0]
    assert agreement > 0.95
    tables = routes.fit(route, sources, out)
    parts = routes.parts("m0", route, sources, tables, {"head"})
    program = grammar.parse(HEAD + "\n".join(f"{p.name} = {expr(p.node)};" for p in parts
                                             if p.node is not None) + "\n@output m0_route;")
    got = np.concatenate(evaluate(program, sequences, ir.Ref("m0_route")))
    assert (got == tables.at).all()
    # each routed line is its source in its class, None elsewhere; its rows cover its values
    routed = 0
    for k, s in enumerate(route.sources):
        if s < 0:
            continue
        line = next(p for p in parts if p.E is not None and isinstance(p.node, ir.Cond)
                    and p.node.cond.right == ir.Const(k))
        values = np.concatenate(evaluate(program, sequences, ir.Ref(line.name)))
        basis = sources[s].basis
        expected = [basis[c] if at == k else None for c, at in zip(sources[s].codes,
                                                                  tables.at)]
        assert values.tolist() == expected
        assert set(values.tolist()) <= set(line.basis) and None in line.basis
        routed += 1
    assert routed >= 2


def test_type_of_keeps_the_nodes_it_keys_by_identity():
    # a temporary Ref freed after one call could give its id to the next one, which then
    # read the first one's type (the route's lines were typed as the route's classes)
    program = grammar.parse('@vocab {"a", "b"};\n@maxlen 4;\n'
                            'c = {"a": 0, "b": 1}[tokens];\n'
                            'g = tokens if c == 0 else None;\n@output g;')
    interpreter = Interpreter(program)
    from rasp_ir.types import basis_of
    assert basis_of(interpreter.type_of(ir.Ref("c"))) == (0, 1)
    assert basis_of(interpreter.type_of(ir.Ref("g"))) == (None, "a", "b")


def test_a_tables_if_evaluates_each_branch_only_where_taken():
    # token_id(None) is no entry of token_id's table: the else branch must not see None
    program = grammar.parse(
        '@vocab {"0", "1", "2", "<eos>"};\n@maxlen 4;\n'
        'g = tokens if tokens != "0" else None;\n'
        'logits = project(inp=g, op=(False if inp == None else '
        'token_id(out) == token_id(inp) + 1));\n@output logits;')
    got = np.asarray(evaluate(program, [["0", "1", "2"]], ir.Ref("logits"))[0])
    votes = [row.argmax() if row.any() else None for row in got]
    assert votes == [None, 2, 3]


NUMERALS = tuple(str(i) for i in range(12)) + ("<bos>", "<sep>", "<eos>")


def header(vocab):
    return f"@vocab {{{', '.join(literal(v) for v in vocab)}}};\n@maxlen {len(vocab)};\n"


@pytest.mark.parametrize("rows", [(0, 1, 2), (False, True)])
def test_vote_labels_compute_their_tables(rows):
    m = np.zeros((len(rows), len(NUMERALS)))
    m[0, NUMERALS.index("<eos>")] = 9.0                 # stands out
    m[1, 3] = 0.5                                       # a faint vote
    prims = vote_logit_primitives(m, rows, NUMERALS)
    assert [p.matrix(rows, NUMERALS).sum(1).tolist() for p in prims] == \
        [[1, 0] + [0] * (len(rows) - 2), [1, 1] + [1] * (len(rows) - 2)]
    # rows as the values of a variable over the sequence's positions, in order
    keys = {t: rows[i % len(rows)] for i, t in enumerate(NUMERALS)}
    c = "{" + ", ".join(f"{literal(t)}: {literal(v)}" for t, v in keys.items()) + "}[tokens]"
    program = grammar.parse(header(NUMERALS) + f"c = {c};\n" + "\n".join(
        f"s{i} = project(inp=c, op={p.label()});" for i, p in enumerate(prims)))
    sequence = list(NUMERALS[:len(rows)])
    for i, p in enumerate(prims):
        got = np.asarray(evaluate(program, [sequence], ir.Ref(f"s{i}"))[0])
        np.testing.assert_array_equal(got > 0, p.matrix(rows, NUMERALS) > 0, p.label())


def test_silent_none_labels_compute_their_tables():
    plain = tuple(t for t in NUMERALS if t != "<bos>")       # <bos> is where g is None
    m = np.zeros((len(plain), len(NUMERALS)))
    for i in range(11):
        m[i, i + 1] = 3.0
    rows = (None,) + plain
    prims = [silent_none(p) for p in token_logit_primitives(m, plain, NUMERALS, NUMERALS)]
    assert len(prims) == 4 and all(p.matrix(rows, NUMERALS) is not None for p in prims)
    program = grammar.parse(header(NUMERALS) + 'g = tokens if tokens != "<bos>" else None;\n'
                            + "\n".join(f"s{i} = project(inp=g, op={p.label()});"
                                        for i, p in enumerate(prims)))
    sequence = ["<bos>"] + list(plain)
    for i, p in enumerate(prims):
        got = np.asarray(evaluate(program, [sequence], ir.Ref(f"s{i}"))[0])
        np.testing.assert_array_equal(got > 0, p.matrix(rows, NUMERALS) > 0, p.label())
        assert not p.matrix(rows, NUMERALS)[0].any()          # None votes for nothing
