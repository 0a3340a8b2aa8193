"""TransformerLens both ways: `rasp export --to transformer-lens`, `to_hooked_transformer` (logits
equal to rasp-ir's on random inputs, compiled and trained), and a HookedTransformer of the
GPT-2 kind (LN, LNPre, attention only, bidirectional) read back as a checkpoint that
`rasp eval` takes. Reading a TransformerLens directory needs no TransformerLens."""

import json

import pytest
import torch
from conftest import EXAMPLES, SHARED

from compiler.checkpoint import CheckpointError, load_model
from compiler.compile import compile_program, save_compiled
from compiler.export import export
from rasp_ir.cli import main

TRAINED = [EXAMPLES / "bin_majority",
           SHARED / "checkpoints" / "bce_tomita4-@2l2h16d3lr01drop",
           SHARED / "checkpoints" / "unique_copy-@2l1h64d3lr01drop"]


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    import grammar
    directory = tmp_path_factory.mktemp("compiled") / "reverse"
    save_compiled(compile_program(grammar.load(EXAMPLES / "reverse.rasp")), directory)
    return directory


def random_ids(config, batch=8, length=20, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, config.vocab_size, (batch, min(length, config.n_positions)),
                         generator=g)


def checkpoints(compiled):
    return [compiled] + [d for d in TRAINED if d.is_dir()]


def test_exported_directory_loads_as_the_same_model(compiled, tmp_path):
    for directory in checkpoints(compiled):
        out = tmp_path / directory.name
        result = export(directory, out, "transformer-lens")
        assert result["kind"] == "transformer-lens"
        model, meta = load_model(directory)
        back, back_meta = load_model(out)
        assert meta["model_type"] != back_meta["model_type"] == "transformer-lens"
        assert back.config == model.config and back_meta["extra"] == meta["extra"]
        ids = random_ids(model.config)
        assert torch.equal(model(ids), back(ids))


def test_hooked_transformer_logits_equal_rasp_irs(compiled):
    pytest.importorskip("transformer_lens")
    from compiler.export import to_hooked_transformer
    for directory in checkpoints(compiled):
        for dtype in (torch.float64, torch.float32):
            model, _ = load_model(directory, dtype=dtype)
            ht = to_hooked_transformer(model)
            assert ht.cfg.dtype == dtype and ht.cfg.n_layers == model.config.n_layers
            ids = random_ids(model.config)
            ours, theirs = model(ids), ht(ids)
            # float64 shows the mapping is exact; float32 rounds differently in each library
            bound = 1e-10 if dtype == torch.float64 else 1e-5 * max(1.0, ours.abs().max())
            assert (ours - theirs).abs().max() <= bound, (directory.name, dtype)


def test_hooked_transformer_runs_with_hooks(compiled):
    pytest.importorskip("transformer_lens")
    from compiler.export import load_hooked_transformer
    ht = load_hooked_transformer(compiled)
    ids = random_ids(load_model(compiled)[0].config, batch=2, length=6)
    _, cache = ht.run_with_cache(ids)
    assert cache["pattern", 0].shape == (2, ht.cfg.n_heads, 6, 6)


@pytest.mark.parametrize("kind", [
    dict(normalization_type="LN", act_fn="gelu_new"),
    dict(normalization_type="LNPre", act_fn="gelu"),
    dict(normalization_type=None, attn_only=True),
    dict(normalization_type="LN", act_fn="relu", attention_dir="bidirectional", d_vocab_out=5),
])
def test_a_hooked_transformer_loads_as_a_checkpoint(tmp_path, kind):
    tl = pytest.importorskip("transformer_lens")
    from compiler.export import save_hooked_transformer
    cfg = tl.HookedTransformerConfig(d_model=16, d_head=4, n_heads=4, n_layers=2, n_ctx=12,
                                     d_vocab=7, d_mlp=None if kind.get("attn_only") else 32,
                                     seed=0, dtype=torch.float64, **kind)
    ht = tl.HookedTransformer(cfg)
    with torch.no_grad():               # LayerNorm weights and biases away from 1 and 0
        for p in ht.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    save_hooked_transformer(ht, tmp_path / "ht")
    model, meta = load_model(tmp_path / "ht")
    assert meta["model_type"] == "transformer-lens"
    ids = random_ids(model.config, length=12)
    assert (model(ids) - ht(ids)).abs().max() < 1e-10


def test_eval_takes_an_exported_checkpoint(tmp_path, capsys):
    out = tmp_path / "bm_tl"
    assert main(["export", str(EXAMPLES / "bin_majority"), "--to", "transformer-lens",
                 "-o", str(out), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)["result"]
    assert {"config.json", "model.safetensors", "task.json", "tokenizer.json"} <= set(
        result["files"])
    assert main(["eval", str(out), "--n", "50", "--lengths", "0-50", "--json", "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out)["result"]["buckets"]["0-50"] == 1.0


def test_a_bare_config_dump_and_its_problems(tmp_path):
    directory = tmp_path / "tl"
    export(EXAMPLES / "bin_majority", directory, "transformer-lens")
    config = json.loads((directory / "config.json").read_text())
    bare = dict(config["cfg"])              # HookedTransformerConfig fields only
    (directory / "config.json").write_text(json.dumps(bare))
    assert load_model(directory)[1]["model_type"] == "transformer-lens"
    bare.update(positional_embedding_type="rotary", act_fn="silu")
    (directory / "config.json").write_text(json.dumps(bare))
    with pytest.raises(CheckpointError) as error:
        load_model(directory)
    messages = " ".join(d.message for d in error.value.diagnostics)
    assert "cfg.positional_embedding_type" in messages and "cfg.act_fn" in messages
    assert str(directory / "config.json") in messages


def test_hugging_face_export(compiled, tmp_path):
    assert export(EXAMPLES / "bin_majority", tmp_path / "hf", "hugging-face")["kind"] == "gpt2"
    assert export(compiled, tmp_path / "hf_c", "hugging-face")["kind"] == "rasp-ir"
    assert (tmp_path / "hf_c" / "modeling_rasp_ir.py").is_file()
    with pytest.raises(CheckpointError):
        export(compiled, compiled, "transformer-lens")
