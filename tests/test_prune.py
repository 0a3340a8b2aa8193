"""Extractor part 2: the masked circuit, the pruning stages, the sweep and the pruned program.

The circuit with every edge kept is the linearised model; the program printed from a circuit
under any hard masks (with learned constants anywhere) computes what the circuit computes; a
pruning run is a pure function of its seed; the sweep never runs a cached run twice.
"""

import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from compiler.transformer import Transformer, TransformerConfig
from conftest import EXAMPLES
from extractor.decompile.circuit import Circuit, full_masks
from extractor.decompile.circuit_program import circuit_program
from extractor.decompile.prune import (Layout, PruneSettings, kept_edges, prune, sample_masks,
                             stage_components, stage_paths, stage_products)
from extractor.decompile.sweep import RunSpec, SerialExecutor, _next_lams, frontier, sweep
from rasp_ir import nodes as ir
from rasp_ir.cli import main
from rasp_ir.interpreter import evaluate

TOKENS = tuple("abcde")


def random_model(layers=2, heads=2, d_model=8, positions=10, seed=0, layer_norm=True):
    torch.manual_seed(seed)
    model = Transformer(TransformerConfig(vocab_size=len(TOKENS), n_positions=positions,
                                          d_model=d_model, n_layers=layers, n_heads=heads,
                                          layer_norm=layer_norm))
    with torch.no_grad():
        for name, p in model.named_parameters():   # biases and LayerNorm weights too
            p.normal_(1.0 if name.endswith(".w") else 0.0, 0.3)
    if layer_norm:
        for block in model.blocks:
            block.ln1.fixed_scale, block.ln2.fixed_scale = 0.8, 1.3
        model.ln_final.fixed_scale = 0.9
    return model.eval()


def sequences(seed, count=4, longest=10):
    rng = np.random.default_rng(seed)
    return [list(rng.choice(list(TOKENS), size=int(rng.integers(1, longest + 1))))
            for _ in range(count)]


def circuit_logits(circuit, masks, seq):
    ids = torch.tensor([[TOKENS.index(t) for t in seq]])
    with torch.no_grad():
        return circuit(ids, torch.arange(len(seq))[None], masks)[0].double().numpy()


@pytest.mark.parametrize("layer_norm", [True, False])
def test_the_circuit_with_every_edge_is_the_model(layer_norm):
    model = random_model(layer_norm=layer_norm)
    circuit = Circuit(model)
    for seq in sequences(1):
        ids = torch.tensor([[TOKENS.index(t) for t in seq]])
        with torch.no_grad():
            ref = model(ids)[0].numpy()
        got = circuit_logits(circuit, full_masks(circuit.graph), seq)
        assert np.abs(got - ref).max() < 1e-4


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), products=st.booleans())
def test_the_printed_program_computes_what_the_circuit_computes(seed, products):
    # random hard masks, random ablation constants and offsets: every constant the program
    # folds into its tables has to land in the right place
    model = random_model(seed=seed % 7)
    circuit = Circuit(model)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in (circuit.ablation, circuit.q_offset, circuit.mlp_offset, circuit.out_offset):
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
        for p in circuit.parameters():
            if p.dim() == 1 and p.requires_grad and p.numel() <= 2:   # LLN-A scales
                p.add_(torch.randn(p.shape, generator=gen) * 0.1)
    layout = Layout(circuit.graph)
    flat = layout.valid.float() * (torch.rand(layout.size, generator=gen) < 0.6).float()
    if not products:        # stages 1 and 2: products follow the query and key masks
        from extractor.decompile.prune import with_products
        flat = with_products(layout, flat)
    program = circuit_program(circuit, flat, TOKENS, TOKENS, None)
    seqs = sequences(seed)
    got = evaluate(program, seqs, ir.Ref("logits"))
    masks = layout.masks(flat, True)
    for seq, logits in zip(seqs, got):
        ref = circuit_logits(circuit, masks, seq)
        assert np.abs(logits - ref).max() <= 1e-4 * max(1.0, np.abs(ref).max())


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), layers=st.integers(1, 3), start=st.integers(0, 9))
def test_answering_from_a_later_position_changes_nothing_there(seed, layers, start):
    # the last layer's queries and MLP run only from `start` on (pruning's shortcut): the
    # logits there, and their gradients, are those of the whole sequence
    model = random_model(layers=layers, seed=seed % 5)
    circuit = Circuit(model)
    layout = Layout(circuit.graph)
    gen = torch.Generator().manual_seed(seed)
    theta = torch.randn(layout.size, generator=gen, requires_grad=True)
    ids = torch.randint(0, len(TOKENS), (3, 10), generator=gen)
    positions = torch.arange(10).expand(3, -1)
    outs, grads = [], []
    for first in (0, start):
        masks = layout.masks(torch.sigmoid(theta)[None].expand(3, -1), True)
        logits = circuit(ids, positions, masks, first)
        outs.append(logits[:, start - first:])
        outs[-1].square().sum().backward()
        grads.append(theta.grad.clone())
        theta.grad = None
    assert outs[1].shape == (3, 10 - start, len(TOKENS))
    torch.testing.assert_close(outs[1], outs[0], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-3, atol=1e-5)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), layers=st.integers(1, 3),
       chosen=st.sets(st.integers(0, 9), min_size=1))
def test_answering_at_chosen_positions_changes_nothing_there(seed, layers, chosen):
    # pruning's `positions`: the last layer runs at a few positions only; the logits there
    # are those of the whole sequence
    model = random_model(layers=layers, seed=seed % 5)
    circuit = Circuit(model)
    layout = Layout(circuit.graph)
    gen = torch.Generator().manual_seed(seed)
    theta = torch.randn(layout.size, generator=gen)
    ids = torch.randint(0, len(TOKENS), (3, 10), generator=gen)
    positions = torch.arange(10).expand(3, -1)
    masks = layout.masks(torch.sigmoid(theta)[None].expand(3, -1), True)
    where = torch.tensor(sorted(chosen))
    with torch.no_grad():
        whole = circuit(ids, positions, masks)
        some = circuit(ids, positions, masks, where)
    assert some.shape == (3, len(where), len(TOKENS))
    torch.testing.assert_close(some, whole[:, where], rtol=1e-4, atol=1e-5)


def test_a_step_scores_a_sample_of_the_answer_positions():
    from extractor.decompile.prune import scored_rows
    from extractor.tasks.batches import Batch
    scored = torch.zeros(2, 12, dtype=torch.bool)
    scored[0, 5:9] = scored[1, 7:12] = True
    batch = Batch(tokens=torch.zeros(2, 12, dtype=torch.long),
                  positions=torch.arange(12).expand(2, -1), targets=torch.zeros(2, 12),
                  scored=scored, mode="lm")
    gen = torch.Generator().manual_seed(0)
    assert scored_rows(batch, 5, 0, gen) == 5          # 0: every position from the first
    assert scored_rows(batch, 5, 7, gen) == 5          # no fewer answers than asked for
    drawn = [scored_rows(batch, 5, 3, gen) for _ in range(50)]
    assert all(len(d) == 3 and (d.diff() > 0).all() and (d >= 5).all() for d in drawn)
    assert set(torch.cat(drawn).tolist()) == set(range(5, 12))


def test_stages_refine_what_the_previous_stage_kept():
    circuit = Circuit(random_model())
    layout = Layout(circuit.graph)
    first = stage_components(layout)
    # one group per (component, reader): 2 layers x 2 heads, tokens and positions ...
    assert 0 < first.n_groups < int(layout.valid[:layout.offsets["qk"]].sum())
    keep = torch.zeros(1, first.n_groups)
    keep[0, ::2] = 1
    flat = first.expand(keep)[0]
    second = stage_paths(layout, flat)
    assert second.n_groups == len(kept_edges(layout, flat, False))
    # everything the second stage frees was kept by the first
    assert (flat[second.groups >= 0] > 0).all()
    third = stage_products(layout, second.expand(torch.ones(1, second.n_groups))[0])
    assert third.products and (third.groups[:layout.offsets["qk"]] < 0).all()


def test_the_sampler_keeps_masks_in_range_and_passes_gradients_inside_the_window():
    theta = torch.tensor([-8.0, 0.0, 8.0], requires_grad=True)
    m = sample_masks(theta, 500, torch.Generator().manual_seed(0))
    assert m.min() >= 0 and m.max() <= 1
    assert m[:, 0].max() == 0 and m[:, 2].min() == 1      # far from the window: hard
    m.sum().backward()
    assert theta.grad[1] > 0 and theta.grad[0].abs() < 1e-3


@pytest.fixture(scope="module")
def majority():
    from extractor.tasks.checkpoint import load_subject
    from extractor.decompile.linearise import estimate_scales, linearised
    subject = load_subject(EXAMPLES / "bin_majority")
    return subject, linearised(subject.model, estimate_scales(subject.model, subject.task))


def test_pruning_is_reproducible_with_its_seed(majority):
    subject, linear = majority
    quick = PruneSettings(steps=(30, 20, 20), pool=3, batch=8, selection=8)
    runs = [prune(subject.model, linear, subject.task, 1e-2, quick, seed=3)[1]
            for _ in range(2)]
    assert torch.equal(runs[0].flat, runs[1].flat)
    for name, value in runs[0].state.items():
        assert torch.equal(value, runs[1].state[name]), name


def test_a_stage_ends_once_its_masks_settle(majority):
    """With `patience`, a stage stops after its hard masks have stayed the same that many
    steps (and not before `min_steps`); without it, every step runs; the cache key of a run
    without early stops is what it was before the option existed."""
    subject, linear = majority
    heard = []
    settle = PruneSettings(steps=(200, 200, 200), pool=3, batch=8, selection=8, patience=10,
                           min_steps=20)
    prune(subject.model, linear, subject.task, 1e-2, settle, seed=3,
          progress=lambda name, step, total, *rest: heard.append((name, step, total)))
    last = {name: (step, total) for name, step, total in heard}
    assert all(20 <= step == total < 200 for step, total in last.values()), last
    assert "patience" not in PruneSettings().to_dict()
    assert settle.to_dict()["patience"] == 10

def test_the_sweep_brackets_the_threshold():
    def summary(lam, match, edges):
        return {"lam": lam, "stages": [{"stage": stage, "edges": edges,
                                        "match": {"0-50": match}}
                                       for stage in ("components", "paths", "products")]}
    done = {1e-3: summary(1e-3, 1.0, 9), 1e-2: summary(1e-2, 0.95, 5),
            1e-1: summary(1e-1, 0.5, 1)}
    lams = _next_lams(done, 0.9, 2, 5)
    assert len(lams) == 2 and all(1e-2 < lam < 1e-1 for lam in lams)
    assert _next_lams({1e-3: summary(1e-3, 0.2, 9)}, 0.9, 2, 5) == [1e-4]
    assert _next_lams({1e-2: summary(1e-2, 0.95, 0)}, 0.9, 2, 5) == []      # nothing left
    # nothing smaller to find between a passing run and a failing run of the same size
    assert _next_lams({1e-2: summary(1e-2, 0.95, 2), 1e-1: summary(1e-1, 0.5, 2)}, 0.9, 2, 5) \
        == []
    front = frontier(list(done.values()))["products"]
    assert [p["edges"] for p in front] == [1, 5, 9]


def test_the_best_found_when_nothing_passes_ranks_worst_then_mean_then_size():
    from extractor.decompile.extract import best_found

    def entry(lines, *matches):
        return {"lines": lines, "buckets": {str(i): {"match": m} for i, m in enumerate(matches)}}
    # every candidate fails the last bucket completely (a non-generalising model): the mean
    # decides, not the size
    tiny, useful = entry(2, 0.0, 0.0, 0.0), entry(9, 0.66, 0.11, 0.0)
    assert best_found([tiny, useful]) is useful
    better_worst = entry(12, 0.3, 0.3, 0.3)
    assert best_found([tiny, useful, better_worst]) is better_worst
    short = entry(4, 0.66, 0.11, 0.0)
    assert best_found([useful, short]) is short


def test_sweep_runs_are_cached_and_resumed(tmp_path, monkeypatch):
    import extractor.decompile.sweep as sweep_module
    from safetensors.torch import save
    calls = []

    def fake_run(job):
        spec = job.spec
        calls.append(spec.lam)
        out = {"lam": spec.lam, "stages": [{"stage": "products", "edges": int(10 / spec.lam),
                                            "match": {"0-50": 1.0 if spec.lam < 0.05 else 0.0}}]}
        return out, save({"flat": torch.zeros(1)})

    monkeypatch.setattr(sweep_module, "run_job", fake_run)
    base = RunSpec(str(EXAMPLES / "bin_majority"), None, {}, {}, 0, 0.0)
    first = sweep(base, tmp_path, 0.9, SerialExecutor(), max_runs=5)
    assert len(calls) == 5 and len(first) == 5
    calls.clear()
    again = sweep(base, tmp_path, 0.9, SerialExecutor(), max_runs=5)
    assert calls == [] and sorted(s["lam"] for s in again) == sorted(s["lam"] for s in first)


def test_a_run_key_follows_the_weights_bytes_not_their_copy_time(tmp_path):
    import os
    import shutil
    copy = tmp_path / "bin_majority"
    shutil.copytree(EXAMPLES / "bin_majority", copy)
    weights = copy / "model.safetensors"
    os.utime(weights, (1, 1))             # a data folder synced again: same bytes, new time

    def key(folder):
        return RunSpec(str(folder), None, {}, {}, 0, 1e-3).key()
    assert key(copy) == key(EXAMPLES / "bin_majority")
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1                         # the last byte of the last tensor
    weights.write_bytes(bytes(data))
    assert key(copy) != key(EXAMPLES / "bin_majority")


def test_extract_quick_on_the_shipped_example(tmp_path, capsys):
    # the README's command: a short program that matches the model on held-out sequences
    out = tmp_path / "majority.rasp"
    assert main(["extract", str(EXAMPLES / "bin_majority"), "--quick", "--workers", "1",
                 "-o", str(out), "--quiet", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)["result"]
    assert report["reached_threshold"]
    assert report["program"]["lines"] <= 6
    for bucket in report["evaluation"]["buckets"].values():
        assert bucket["match"] >= 0.9
    assert set(report["frontier"]) == {"components", "paths", "products"}
    assert (tmp_path / "majority.runs").is_dir()
    assert main(["run", str(out), "1 1 0 1 <sep>", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["result"]["output"][-1] == "1"


def test_answer_positions_reach_the_runs_and_their_cache_keys():
    # --answer-positions: the pruning settings carry it, and a run with it is another run
    # (its own cache key); without it the key is what it was before the option existed
    from extractor.decompile.extract import ExtractSettings
    assert "positions" not in ExtractSettings().prune_settings().to_dict()
    for quick in (False, True):
        sampled = ExtractSettings(answer_positions=32, quick=quick).prune_settings()
        assert sampled.positions == 32 and sampled.to_dict()["positions"] == 32
    base = RunSpec("ckpt", None, {}, ExtractSettings().prune_settings().to_dict(), 0, 0.01)
    other = RunSpec("ckpt", None, {}, sampled.to_dict(), 0, 0.01)
    assert base.key() != other.key()


def test_a_no_op_mlp_keeps_its_own_tables_through_the_side_file(tmp_path):
    # a no-op MLP reads as its input variable: its projection must not take the input's
    # table name (the side-file would keep one of the two)
    import grammar
    from extractor.decompile.circuit_program import MlpReplacement, table_names
    from rasp_ir.tables import write_program
    model = random_model(layers=1, heads=1)
    circuit = Circuit(model)
    layout = Layout(circuit.graph)
    flat = layout.valid.float()
    E = np.random.default_rng(0).normal(size=(len(TOKENS), model.config.d_model))
    mlp = circuit.graph.mlp_path(0)
    program = circuit_program(circuit, flat, TOKENS, TOKENS, "softmax",
                              mlp_outputs={mlp: MlpReplacement("token", None, TOKENS, E,
                                                               ir.Tokens())})
    names = table_names(program)
    assert len(names) == len(set(names))
    write_program(program, tmp_path / "p.rasp")
    reread = grammar.load(tmp_path / "p.rasp")
    seqs = sequences(3)
    for a, b in zip(evaluate(program, seqs, program.output), evaluate(reread, seqs, reread.output)):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


def test_an_mlp_read_as_a_sum_adds_its_parts_logits():
    """An MLP only the logits read, replaced by a sum of readings: its logits are the sum of
    each part's alone (less the shared rest counted twice), and a part that reads an input as
    it is joins that input's own logit table."""
    from extractor.decompile.circuit_program import MlpReplacement, table_names
    model = random_model(layers=1, heads=1)
    circuit = Circuit(model)
    layout = Layout(circuit.graph)
    flat = layout.valid.float()
    rng = np.random.default_rng(0)
    D, P = model.config.d_model, model.config.n_positions
    E1, E2 = rng.normal(size=(len(TOKENS), D)), rng.normal(size=(P, D))
    token = lambda E: MlpReplacement("token", None, TOKENS, E, ir.Tokens())   # noqa: E731
    pos = MlpReplacement("pos", None, tuple(range(P)), E2, ir.Indices())
    mlp = circuit.graph.mlp_path(0)

    def logits(rep):
        program = circuit_program(circuit, flat, TOKENS, TOKENS, None, mlp_outputs={mlp: rep})
        return program, evaluate(program, seqs, ir.Ref("logits"))

    seqs = sequences(5)
    program, both = logits((token(E1), pos))
    _, first = logits(token(E1))
    _, second = logits(pos)
    _, none = logits(token(np.zeros_like(E1)))
    for b, f, s, n in zip(both, first, second, none):
        np.testing.assert_allclose(b, f + s - n, rtol=1e-9, atol=1e-9)
    names = table_names(program)
    assert len(names) == len(set(names))
    projects = [t for t in program.binding("logits").value.terms if t.operand == ir.Tokens()]
    assert len(projects) == 1                       # the token's table holds both paths


def test_only_an_mlp_the_logits_alone_read_can_be_a_sum():
    from extractor.decompile.circuit_program import MlpReplacement, read_by_logits_only
    model = random_model(layers=2, heads=1)
    circuit = Circuit(model)
    layout = Layout(circuit.graph)
    flat = layout.valid.float()
    first, last = circuit.graph.mlp_path(0), circuit.graph.mlp_path(1)
    assert not read_by_logits_only(layout, flat, first)
    assert read_by_logits_only(layout, flat, last)
    E = np.zeros((len(TOKENS), model.config.d_model))
    part = MlpReplacement("token", None, TOKENS, E, ir.Tokens())
    with pytest.raises(ValueError):
        circuit_program(circuit, flat, TOKENS, TOKENS, None, mlp_outputs={first: (part,)})


def test_an_mlp_read_exactly_is_kept_whatever_the_noise_of_the_floor():
    """An MLP that reads only the token is a function of it: read as the token (no line, the
    fit writes what it wrote), the program computes what it did on every judged position.
    That is kept without judging against the floors, which a judge near them refuses by
    noise (here: refuses everything)."""
    from extractor.decompile.replace import Replacer

    class Refusing:
        """A judge whose floors nothing passes, though the match it measures is 0.95."""

        def __init__(self, seqs):
            self.sets = {"all": [(s, None, None, None) for s in seqs]}

        def passes(self, program, floor):
            return None

        def __call__(self, program):
            return {"all": 0.95}

    model = random_model(layers=1, heads=1)
    circuit = Circuit(model)
    layout = Layout(circuit.graph)
    flat = layout.valid.float().clone()
    mlp = circuit.graph.mlp_path(0)
    for p, path in enumerate(circuit.graph.paths[:mlp]):
        if path.name != "token":                 # the MLP reads the token alone
            flat[layout.index("mlp", 0, p)] = 0
    seqs = sequences(7, count=30)
    r = Replacer(circuit, flat, TOKENS, TOKENS, None, Refusing(seqs), {"all": 0.9})
    before = r.build()
    r.replace_mlps()
    rep = r.mlp_outputs[mlp]
    assert rep.node is None and rep.ref == ir.Tokens()
    assert r.log[-1]["exact"] is True and r.log[-1]["match"] == 0.95
    after = r.build()
    assert not any(isinstance(b.value, ir.Mlp) for b in after.bindings)
    for a, b in zip(evaluate(before, seqs, before.output), evaluate(after, seqs, after.output)):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9)


def test_noise_in_an_mlps_output_has_the_stated_size():
    """The report of an MLP that stays gives the match under noise in its output; the noise
    added is the stated share of the output's spread (RMS over the positions judged), and
    only that MLP's output weights change."""
    from extractor.decompile.replace import with_output_noise
    model = random_model(layers=1, heads=1)
    circuit = Circuit(model)
    flat = Layout(circuit.graph).valid.float()
    program = circuit_program(circuit, flat, TOKENS, TOKENS, None)
    seqs = sequences(3, count=20)
    out = np.concatenate(evaluate(program, seqs, ir.Ref("m0")))
    variance = float(out.var(0).sum())
    shares = (0.01, 0.1)
    noisy = with_output_noise(program, "m0", seqs, variance, shares, 5)
    assert len(noisy) == 2
    for share, p in zip(shares, noisy):
        got = np.concatenate(evaluate(p, seqs, ir.Ref("m0")))
        rms = np.sqrt(np.mean(np.sum((got - out) ** 2, 1)))
        assert rms == pytest.approx(share * np.sqrt(variance), rel=1e-6)
        changed = [a.name for a, b in zip(program.bindings, p.bindings) if a != b]
        assert changed == ["m0"]
        node = next(b.value for b in p.bindings if b.name == "m0")
        assert node.W_in == next(b.value for b in program.bindings if b.name == "m0").W_in
    assert with_output_noise(program, "logits", seqs, variance, shares, 5) == []


def test_an_mlp_the_written_program_keeps_gets_its_noise_figures_in_the_log():
    from extractor.decompile.extract import _sensitivities
    from extractor.decompile.replace import NOISE_SHARES
    model = random_model(layers=1, heads=1)
    circuit = Circuit(model)
    program = circuit_program(circuit, Layout(circuit.graph).valid.float(), TOKENS, TOKENS,
                              None)
    seqs = sequences(4, count=10)

    class Judge:
        sets = {"all": [(s, None, None, None) for s in seqs]}
        seen = []

        def __call__(self, candidate):
            self.seen.append(candidate)
            return {"all": 0.5}

    judge = Judge()
    log = [{"what": "mlp 0", "primitive": None, "readings": 3}]
    assert _sensitivities(program, judge, {"all": 0.9}, log) == len(NOISE_SHARES)
    assert log[0]["floor"] == {"all": 0.9} and log[0]["readings"] == 3
    assert [t["share"] for t in log[0]["output_noise"]] == list(NOISE_SHARES)
    assert judge.seen[0] == program            # share 0: the program as it is
