"""`rasp train`: a tiny run end to end (checkpoint loadable by transformers, task.json,
acc.txt), seeding, early stopping, the tied unembedding, dropout, user tasks, bad options.
The real runs (bin_majority to accuracy 1.0 in well under 5 minutes) are marked slow."""

import json
import time

import numpy as np
import pytest
import torch

from compiler.checkpoint import load_model
from conftest import EXAMPLES
from extractor.training import train as train_module
from extractor.tasks.checkpoint import load_with_task, recorded_accuracy
from extractor.tasks.registry import get_task
from extractor.training.train import TrainConfig, build_model, train
from rasp_ir.cli import main

TINY = ["--layers", "1", "--heads", "1", "--d-model", "8", "--steps", "20",
        "--eval-every", "10", "--n", "20"]


def run_cli(capsys, *argv):
    code = main(list(map(str, argv)))
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def test_tiny_run_writes_a_checkpoint_that_transformers_loads(tmp_path, capsys):
    out_dir = tmp_path / "bm"
    code, out, _ = run_cli(capsys, "train", "bin_majority", *TINY, "-o", out_dir, "--json")
    assert code == 0
    result = json.loads(out)["result"]
    assert result["arch"] == "1l1h8d3lr00drop" and result["steps"] == 20
    assert set(result["accuracy"]) == {"0-50", "51-100", "101-150"}
    assert {p.name for p in out_dir.iterdir()} >= {"config.json", "model.safetensors",
                                                   "task.json", "acc.txt"}
    meta = json.loads((out_dir / "task.json").read_text())
    assert meta["task"] == "bin_majority" and meta["mode"] == "lm"
    assert meta["vocab"] == ["0", "1", "<bos>", "<sep>", "<eos>", "<pad>"]
    assert meta["training"]["steps_run"] == 20 and meta["accuracy"] == result["accuracy"]
    assert recorded_accuracy(out_dir) == result["accuracy"]
    assert (out_dir / "acc.txt").read_text().startswith("1l1h8d3lr00drop\t\t ")

    model, task = load_with_task(out_dir)
    assert task.name == "bin_majority" and model.config.n_positions == 154
    transformers = pytest.importorskip("transformers")
    hf = transformers.GPT2LMHeadModel.from_pretrained(out_dir).eval()
    assert hf.config.bos_token_id == 2 and hf.config.pad_token_id == 5
    examples = [task.sample(np.random.default_rng(0), 0, 50, offset=True) for _ in range(4)]
    for e in examples:
        ids = torch.from_numpy(e.tokens)[None]
        positions = torch.from_numpy(e.positions)[None]
        with torch.no_grad():
            theirs = hf(ids, position_ids=positions).logits
            ours = model(ids, position_ids=positions)
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


def test_same_seed_same_model_and_other_seed_another():
    task = get_task("parity")

    def weights(seed):
        config = TrainConfig(layers=1, heads=1, d_model=8, steps=15, eval_every=100,
                             eval_n=10, seed=seed)
        return train(task, config, [(0, 5)]).model.state_dict()

    a, b, c = weights(0), weights(0), weights(1)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_stops_early_once_in_distribution_accuracy_is_one(monkeypatch):
    calls = []

    def fake_evaluate(model, task, buckets, n, seed, progress=False):
        calls.append(buckets)
        return {f"{lo}-{hi}": 1.0 for lo, hi in buckets}

    monkeypatch.setattr(train_module, "evaluate", fake_evaluate)
    config = TrainConfig(layers=1, heads=1, d_model=8, steps=1000, eval_every=7, eval_n=5)
    result = train(get_task("bin_majority"), config, [(0, 5)])
    assert result.stopped_early and result.steps == 7
    assert calls[0] == [(0, 50)] and calls[-1] == [(0, 5)]


def test_unembedding_stays_tied_and_bias_zero():
    config = TrainConfig(layers=2, heads=2, d_model=8, steps=10, eval_every=100, eval_n=5)
    model = train(get_task("tomita4"), config, [(0, 5)]).model
    assert model.config.tie_embeddings and model.W_U._base is model.embed.W_E
    assert "unembed.W_U" not in dict(model.named_parameters())
    assert not model.unembed.b_U.any()
    state = model.state_dict()          # as an untied model's, for checkpoints
    assert torch.equal(state["unembed.W_U"], model.embed.W_E.T)


def test_dropout_only_in_training_mode():
    task = get_task("bin_majority")
    model = build_model(task, TrainConfig(layers=1, heads=1, d_model=16, dropout=0.5))
    tokens = torch.from_numpy(task.sample(np.random.default_rng(0), 10, 10, False).tokens)[None]
    assert model.config.dropout == 0.5
    clean = model.eval()(tokens)
    assert torch.equal(model(tokens), clean)
    model.train()
    assert not torch.equal(model(tokens), clean)
    _, cache = model(tokens, return_cache=True)
    pattern = cache["blocks.0.attn.hook_pattern"]
    assert (pattern == 0).any() and pattern.max() > 1      # dropped and rescaled
    assert torch.equal(model.eval()(tokens), clean)
    still = build_model(task, TrainConfig(layers=1, heads=1, d_model=16))
    still.load_state_dict(model.state_dict())
    assert torch.equal(still.train()(tokens), clean)         # dropout 0: no dropout at all


def test_training_on_a_jsonl_file_and_a_python_class(tmp_path, capsys):
    path = tmp_path / "last.jsonl"
    rng = np.random.default_rng(0)
    lines = []
    for _ in range(40):
        seq = [str(x) for x in rng.integers(2, size=int(rng.integers(1, 6)))]
        lines.append(json.dumps({"input": seq, "target": [seq[-1], "<eos>"]}))
    path.write_text("\n".join(lines) + "\n")
    code, out, _ = run_cli(capsys, "train", path, *TINY, "-o", tmp_path / "m1")
    assert code == 0 and "1-5" in out
    code, out, _ = run_cli(capsys, "eval", tmp_path / "m1", "--json")
    assert code == 0 and set(json.loads(out)["result"]["buckets"]) == {"1-5"}

    source = tmp_path / "tasks.py"
    source.write_text("from extractor.tasks.base import PromptAnswerTask\n"
                      "class First(PromptAnswerTask):\n"
                      "    name, symbols, min_length, max_length = 'first', ('u', 'v'), 1, 30\n"
                      "    train_lengths = (1, 10)\n"
                      "    def prompt_answer(self, rng, n):\n"
                      "        s = rng.integers(2, size=n).tolist()\n"
                      "        return s, s[:1]\n")
    code, out, _ = run_cli(capsys, "train", f"{source}:First", *TINY, "-o", tmp_path / "m2")
    assert code == 0 and "0-30" in out          # the paper's buckets, cut at max_length
    assert json.loads((tmp_path / "m2" / "task.json").read_text())["task"] == f"{source}:First"
    # a task.json naming Python code is not run unless the user names it (T407)
    code, _, err = run_cli(capsys, "eval", tmp_path / "m2", "--lengths", "1-30", "--n", 10)
    assert code == 2 and "T407" in err
    code, out, _ = run_cli(capsys, "eval", tmp_path / "m2", "--task", f"{source}:First",
                           "--lengths", "1-30", "--n", 10)
    assert code == 0 and "task first (lm)" in out


@pytest.mark.parametrize("options,words", [
    (["--layers", "1", "--heads", "3", "--d-model", "16"], "not divisible by --heads 3"),
    (["--layers", "1", "--heads", "1", "--d-model", "16", "--dropout", "1.5"], "dropout"),
    (["--layers", "0", "--heads", "1", "--d-model", "16"], "layers"),
    (["--layers", "1", "--heads", "1", "--d-model", "16", "--lengths", "0-500"], "T404"),
])
def test_bad_options_are_coded_errors(tmp_path, capsys, options, words):
    code, _, err = run_cli(capsys, "train", "bin_majority", *options, "-o", tmp_path / "x")
    assert code == 2 and ("error[T406]" in err or "error[T404]" in err) and words in err
    assert not (tmp_path / "x").exists()


def test_unknown_task(tmp_path, capsys):
    code, _, err = run_cli(capsys, "train", "bin_majoriti", *TINY, "-o", tmp_path / "x")
    assert code == 2 and "error[T401]" in err and "did you mean bin_majority" in err


def test_the_shipped_example_was_trained_by_this_command():
    meta = json.loads((EXAMPLES / "bin_majority" / "task.json").read_text())
    assert meta["training"]["arch"] == "1l1h16d3lr00drop" and meta["training"]["stopped_early"]
    model, _ = load_model(EXAMPLES / "bin_majority")
    assert (model.config.n_layers, model.config.n_heads, model.config.d_model) == (1, 1, 16)
    size = sum(p.stat().st_size for p in (EXAMPLES / "bin_majority").iterdir())
    assert size < 40_000


@pytest.mark.slow
def test_bin_majority_reaches_accuracy_one_in_under_five_minutes(tmp_path):
    start = time.perf_counter()
    config = TrainConfig(layers=1, heads=1, d_model=16)
    result = train(get_task("bin_majority"), config)
    assert time.perf_counter() - start < 300
    assert result.stopped_early and result.accuracy["0-50"] == 1.0
