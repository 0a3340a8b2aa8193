"""Extractor part 1: the full path program computes exactly what the (linearised) model does.

This is the exactness test of the whole method: a wrong path, a missing bias or a transposed
table shows up as a logit difference. Trained checkpoints are compared with their LLN-A model
in float32 (1e-4 × max(1, |logit|)) and
float64 (1e-9); compiled models, which have no LayerNorm, with themselves.
The default run checks a few checkpoints on a few sequences; `-m slow` checks every shared
checkpoint of at most two layers on more."""

import copy
import json

import numpy as np
import pytest
import torch

import grammar
from compiler.compile import compile_program, save_compiled
from compiler.transformer import Transformer, TransformerConfig
from conftest import EXAMPLES, SHARED
from extractor.tasks.checkpoint import load_with_task
from extractor.decompile.extract import extract_full, program_size
from extractor.tasks.checkpoint import load_subject
from extractor.decompile.linearise import estimate_scales, faithfulness, linearised
from extractor.decompile.paths import full_program, size
from rasp_ir import nodes as ir
from rasp_ir.cli import main
from rasp_ir.diagnostics import RaspError
from rasp_ir.interpreter import evaluate

CHECKPOINTS = SHARED / "checkpoints"
TWO_LAYERS = sorted(p.name for p in CHECKPOINTS.iterdir()
                    if json.loads((p / "config.json").read_text())["n_layer"] <= 2) \
    if CHECKPOINTS.is_dir() else []
needs_shared = pytest.mark.skipif(not TWO_LAYERS, reason=f"no checkpoints in {CHECKPOINTS}")


def program_logits(program, sequences):
    return evaluate(program, sequences, ir.Ref("logits"))


def check_checkpoint(folder, per_bucket):
    model, task = load_with_task(CHECKPOINTS / folder)
    model.eval()
    linear = linearised(model, estimate_scales(model, task, batches=2))
    tokens = task.vocab.tokens
    program = full_program(linear, tokens, tokens, "softmax" if task.mode == "lm" else "sigmoid")
    rng = np.random.default_rng(0)
    examples = [task.sample(rng, lo, hi, offset=False) for lo, hi in task.test_buckets
                for _ in range(per_bucket)]
    got = program_logits(program, [task.vocab.names(e.tokens) for e in examples])
    linear64 = linearised(copy.deepcopy(model).double(),
                          {n: m.fixed_scale for n, m in _norms(linear).items()})
    for example, logits in zip(examples, got):
        ids = torch.tensor(example.tokens)[None]
        with torch.no_grad():
            ref32 = linear(ids)[0].numpy()
            ref64 = linear64(ids)[0].numpy()
        # float32 rounds logits of size ~80 (bin_majority_interleave) by ~1e-4 on its own
        assert np.abs(logits - ref32).max() <= 1e-4 * max(1.0, np.abs(ref32).max()), folder
        assert np.abs(logits - ref64).max() <= 1e-9, (folder, len(example.tokens))


def _norms(model):
    from extractor.decompile.linearise import layer_norms
    return layer_norms(model)


@needs_shared
@pytest.mark.parametrize("folder", ["bin_majority-@1l1h16d3lr01drop",
                                    "bce_tomita4-@2l2h16d3lr01drop"])
def test_full_program_reproduces_the_linearised_model(folder):
    check_checkpoint(folder, per_bucket=2)


@pytest.mark.slow
@needs_shared
@pytest.mark.parametrize("folder", TWO_LAYERS)
def test_every_shared_checkpoint_is_reproduced(folder):
    check_checkpoint(folder, per_bucket=10)


@pytest.mark.parametrize("name", ["reverse", "histogram", "sort_unique", "most_frequent",
                                  "frac_prevs", "dyck1"])
def test_compiled_models_are_reproduced_exactly(name):
    compiled = compile_program(grammar.load(EXAMPLES / f"{name}.rasp"), 6)
    model = compiled.model
    vocab = tuple(map(str, compiled.vocab))
    outputs = tuple(compiled.output_values or range(model.config.d_vocab_out))
    program = full_program(model, vocab, outputs, compiled.output_function)
    rng = np.random.default_rng(1)
    sequences = [[vocab[0]] + list(rng.choice(vocab[1:], size=n)) for n in range(1, 7)
                 for _ in range(3)]
    index = {t: i for i, t in enumerate(vocab)}
    for seq, logits in zip(sequences, program_logits(program, sequences)):
        with torch.no_grad():
            ref = model(torch.tensor([[index[t] for t in seq]]))[0].numpy()
        assert np.abs(logits - ref).max() <= 1e-4 * max(1.0, np.abs(ref).max()), (name, seq)


def random_model(layers, heads, d_model=8, vocab=5, positions=12, seed=0):
    torch.manual_seed(seed)
    model = Transformer(TransformerConfig(vocab_size=vocab, n_positions=positions,
                                          d_model=d_model, n_layers=layers, n_heads=heads))
    with torch.no_grad():
        for name, p in model.named_parameters():   # biases and LayerNorm weights too
            p.normal_(0.0 if not name.endswith(".w") else 1.0, 0.3)
    return model.eval()


def test_random_models_with_every_bias_are_reproduced():
    # random biases everywhere: a dropped constant would show here
    model = random_model(2, 2)
    for norm in _norms(model).values():
        norm.fixed_scale = 0.7
    tokens = tuple("abcde")
    program = full_program(model, tokens, tokens, "softmax")
    rng = np.random.default_rng(2)
    sequences = [list(rng.choice(list(tokens), size=n)) for n in (1, 4, 12)]
    for seq, logits in zip(sequences, program_logits(program, sequences)):
        with torch.no_grad():
            ref = model(torch.tensor([[tokens.index(t) for t in seq]]))[0].numpy()
        assert np.abs(logits - ref).max() < 1e-4
    # nothing is zero in a random model, so the count from the shapes is the program's size
    counted = size(model, len(tokens), 12, len(tokens))
    built = program_size(program)
    assert (built["paths"], built["score_terms"], built["table_entries"]) == \
        (counted.paths, counted.score_terms, counted.entries)


def test_size_counts_before_building_and_deep_models_stop_clearly():
    model = random_model(4, 4)
    s = size(model, 5, 12, 5)
    assert s.paths == 1406      # 2 -> 11 -> 56 -> 281 -> 1406: P(1 + H) + 1 per layer
    for norm in _norms(model).values():
        norm.fixed_scale = 1.0
    with pytest.raises(RaspError) as info:
        full_program(model, tuple("abcde"), tuple("abcde"), "softmax", limit=100_000)
    message = info.value.diagnostics[0].message
    assert info.value.diagnostics[0].code == "X501"
    assert "paths" in message and "100,000" in message


def test_linearised_layer_norm_is_linear_and_exact_at_the_true_scale():
    model = random_model(1, 1)
    x = torch.randn(3, 8, dtype=torch.float32)
    norm = model.blocks[0].ln1
    real = norm(x)
    scale = float((x[0].var(unbiased=False) + norm.eps).sqrt())
    norm.fixed_scale = scale
    assert torch.allclose(norm(x)[0], real[0], atol=1e-5)
    assert torch.allclose(norm(x[1] + x[2]) - norm.b, (norm(x[1]) - norm.b) + (norm(x[2]) - norm.b),
                          atol=1e-5)


@needs_shared
def test_faithfulness_of_the_real_model_to_itself_is_one():
    model, task = load_with_task(CHECKPOINTS / "bin_majority-@1l1h16d3lr01drop")
    f = faithfulness(model, model, task, n=50)
    assert all(b["match"] == 1.0 and abs(b["kl"]) < 1e-12 for b in f.values())


def test_extract_command_on_the_shipped_example(tmp_path, capsys):
    out = tmp_path / "bin_majority.rasp"
    assert main(["extract", str(EXAMPLES / "bin_majority"), "--stage", "full", "-o", str(out),
                 "--n", "100", "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "match" in text and "paths" in text
    report = json.loads(out.with_suffix(".report.json").read_text())
    assert report["program"]["paths"] == 5 and report["lln_a"]["method"] in ("estimated", "fitted")
    assert set(report["lln_a"]["faithfulness"]) == {"0-50", "51-100", "101-150"}
    # the written program runs and predicts what the model predicts
    assert main(["run", str(out), "<bos> 1 1 0 <sep>", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)["result"]
    assert result["output"][-1] == "1"


def test_extract_command_on_a_compiled_model(tmp_path, capsys):
    compiled = compile_program(grammar.load(EXAMPLES / "reverse.rasp"), 5)
    save_compiled(compiled, tmp_path / "model")
    out = tmp_path / "reverse.rasp"
    assert main(["extract", str(tmp_path / "model"), "--stage", "full", "-o", str(out),
                 "--quiet"]) == 0
    assert "exact rewrite" in capsys.readouterr().out
    bos = compiled.vocab[0]
    assert main(["run", str(out), json.dumps([bos, "a", "b", "c"]), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["result"]["output"][1:] == ["c", "b", "a"]


def test_extract_without_fitting_keeps_the_estimated_scales(tmp_path, capsys):
    out = tmp_path / "p.rasp"
    assert main(["extract", str(EXAMPLES / "bin_majority"), "--stage", "full", "-o", str(out),
                 "--n", "50", "--fit-steps", "0", "--quiet", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)["result"]
    assert report["lln_a"]["method"] == "estimated"
    assert report["lln_a"]["scales"] == report["lln_a"]["estimated_scales"]


def test_extract_errors_name_the_problem(tmp_path, capsys):
    assert main(["extract", str(tmp_path / "nowhere"), "-o", str(tmp_path / "p.rasp")]) != 0
    assert main(["extract", str(EXAMPLES / "bin_majority"), "-o", str(tmp_path / "p.txt")]) != 0
    assert "must end in .rasp" in capsys.readouterr().err
    assert main(["extract", str(EXAMPLES / "bin_majority"), "-o",
                 str(tmp_path / "missing" / "p.rasp")]) != 0
    assert "no such directory" in capsys.readouterr().err
    assert main(["extract", str(EXAMPLES / "bin_majority"), "--task", "tomita3", "-o",
                 str(tmp_path / "p.rasp")]) != 0
    assert not (tmp_path / "p.rasp").exists()


def test_load_subject_of_a_compiled_model_refuses_a_task(tmp_path):
    compiled = compile_program(grammar.load(EXAMPLES / "length.rasp"), 4)
    save_compiled(compiled, tmp_path / "m")
    with pytest.raises(RaspError):
        load_subject(tmp_path / "m", "bin_majority")
    subject = load_subject(tmp_path / "m")
    result = extract_full(subject)
    assert result.report.lln_a is None and result.report.program.paths >= 2


def test_equal_tables_are_built_as_one_object():
    """Extraction rebuilds its program per judged candidate; equal tables come back as the
    same Matrix (the judge's memo then compares them at once), different numbers do not."""
    from extractor.decompile.paths import named_matrix
    values = np.arange(6, dtype=np.float32).reshape(2, 3) / 7
    a = named_matrix("qk0_0.token.token", ("a", "b"), ("x", "y", "z"), values)
    b = named_matrix("qk0_0.token.token", ["a", "b"], ["x", "y", "z"], values.copy())
    assert a is b
    assert a.values == tuple(map(tuple, values.tolist()))   # float32 read as it was
    c = named_matrix("qk0_0.token.token", ("a", "b"), ("x", "y", "z"), values + 1e-7)
    assert c is not a and c != a
    vector = named_matrix("out.bias", ("a", "b"), None, np.array([1.5, -2.0]))
    assert vector.cols is None and vector.values == (1.5, -2.0)
    assert named_matrix("k0_0.pos", ("a", "b"), None, np.array([1.5, -2.0])) is not vector
    # a two-layer circuit has hundreds of tables; each name keeps its last one
    made = [named_matrix(f"qk{i}", ("a",), ("b",), np.array([[i / 3]])) for i in range(300)]
    assert all(named_matrix(f"qk{i}", ("a",), ("b",), np.array([[i / 3]])) is m
               for i, m in enumerate(made))
