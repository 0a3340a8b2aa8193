"""Checkpoint load/save: parity with transformers.GPT2LMHeadModel on every shared checkpoint,
the key variants of GPT-2 files, both round trips, and one error listing every problem."""

import copy
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from compiler.checkpoint import CheckpointError, load_model, save_hf_gpt2, save_model
from compiler.transformer import Transformer, TransformerConfig
from rasp_ir.diagnostics import CODES, RaspError

SHARED_CHECKPOINTS = Path(__file__).parents[1].parent / "shared" / "checkpoints"
CHECKPOINTS = (sorted(p for p in SHARED_CHECKPOINTS.iterdir() if (p / "config.json").is_file())
               if SHARED_CHECKPOINTS.is_dir() else [])


def random_model(seed=0, **overrides) -> Transformer:
    fields = dict(vocab_size=7, n_positions=12, d_model=8, n_layers=2, n_heads=2)
    torch.manual_seed(seed)
    model = Transformer(TransformerConfig(**{**fields, **overrides}))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
        if model.config.layer_norm:    # GPT-2's usual shape: tied unembedding, no bias
            model.unembed.b_U.zero_()
            if model.config.d_vocab_out == model.config.vocab_size:
                model.unembed.W_U.copy_(model.embed.W_E.T)
    return model.eval()


def token_batches(config, seed=0):
    """A few random batches, of lengths 1 to n_positions."""
    g = torch.Generator().manual_seed(seed)
    for length in sorted({1, 5, 17, config.n_positions} & set(range(1, config.n_positions + 1))):
        yield torch.randint(0, config.vocab_size, (3, length), generator=g)


def hf_model(directory):
    transformers = pytest.importorskip("transformers")
    transformers.logging.set_verbosity_error()
    return transformers.GPT2LMHeadModel.from_pretrained(directory).eval()


def problems(directory):
    """The C3xx codes and messages of the CheckpointError that loading `directory` raises."""
    with pytest.raises(CheckpointError) as info:
        load_model(directory)
    error = info.value
    assert isinstance(error, RaspError) and all(code in CODES for code in error.codes)
    assert error.render()      # renders without crashing (C codes have a severity)
    return error.codes, [d.message for d in error.diagnostics]


def write_hf(tmp_path, name="ckpt", **overrides):
    directory = tmp_path / name
    save_hf_gpt2(random_model(**overrides), directory)
    return directory


def rewrite(directory, tensors=None, config=None):
    if tensors is not None:
        (directory / "model.safetensors").unlink()
        save_file(tensors, directory / "model.safetensors", metadata={"format": "pt"})
    if config is not None:
        (directory / "config.json").write_text(json.dumps(config))


def read(directory):
    config = json.loads((directory / "config.json").read_text())
    return load_file(directory / "model.safetensors"), config


# ---------------------------------------------------------------------- parity with transformers

NO_CHECKPOINTS = pytest.param(None, marks=pytest.mark.skip(
    reason=f"no shared checkpoints in {SHARED_CHECKPOINTS}"))


@pytest.mark.parametrize("directory", CHECKPOINTS or [NO_CHECKPOINTS],
                         ids=lambda p: getattr(p, "name", "none"))
def test_forward_equals_transformers_gpt2(directory):
    hf = hf_model(directory)
    model, metadata = load_model(directory)
    assert metadata["model_type"] == "gpt2" and model.config.layer_norm and model.config.causal
    model64, _ = load_model(directory, dtype=torch.float64)
    hf64 = copy.deepcopy(hf).double()
    with torch.no_grad():
        for tokens in token_batches(model.config):
            reference = hf64(tokens).logits
            # Same function: in float64 the two agree to rounding (about 1e-13).
            assert (model64(tokens) - reference).abs().max() < 1e-5
            # In float32 both sides carry float32 rounding; HF's own float32 logits differ from its
            # float64 ones by up to ~1e-4 on checkpoints whose logits reach ~80, so the bound is
            # 1e-5 relative to the logit scale.
            scale = max(1.0, reference.abs().max().item())
            assert (model(tokens) - hf(tokens).logits).abs().max() < 1e-5 * scale


def test_padding_mask_matches_transformers(tmp_path):
    directory = write_hf(tmp_path)
    hf, (model, _) = hf_model(directory).double(), load_model(directory, dtype=torch.float64)
    tokens = torch.randint(0, 7, (3, 10))
    mask = torch.ones(3, 10, dtype=torch.long)
    mask[0, 6:], mask[1, 3:] = 0, 0            # right padding
    with torch.no_grad():
        ours, theirs = model(tokens, attention_mask=mask), hf(tokens, attention_mask=mask).logits
    assert (ours - theirs)[mask.bool()].abs().max() < 1e-10


# ---------------------------------------------------------------------------- key variants

def reference_logits(directory):
    model, _ = load_model(directory, dtype=torch.float64)
    return model(torch.arange(12).remainder(model.config.vocab_size)[None])


@pytest.mark.parametrize("variant", ["no_prefix", "buffers", "explicit_lm_head", "all"])
def test_gpt2_key_variants_load_to_the_same_logits(tmp_path, variant):
    directory = write_hf(tmp_path)
    expected = reference_logits(directory)
    tensors, config = read(directory)
    assert "lm_head.weight" not in tensors and config["tie_word_embeddings"]
    if variant in ("buffers", "all"):     # as older transformers saved them
        for i in range(2):
            mask = torch.ones(12, 12, dtype=torch.uint8).tril()[None, None]
            tensors[f"transformer.h.{i}.attn.bias"] = mask
            tensors[f"transformer.h.{i}.attn.masked_bias"] = torch.tensor(-1e4)
    if variant in ("explicit_lm_head", "all"):
        tensors["lm_head.weight"] = tensors["transformer.wte.weight"].clone()
    if variant in ("no_prefix", "all"):
        tensors = {k.removeprefix("transformer."): v for k, v in tensors.items()}
    rewrite(directory, tensors)
    torch.testing.assert_close(reference_logits(directory), expected, rtol=0, atol=0)


def test_untied_lm_head_is_used(tmp_path):
    model = random_model()
    with torch.no_grad():
        model.unembed.W_U.copy_(torch.randn(8, 7))
    save_hf_gpt2(model, tmp_path / "untied")
    tensors, config = read(tmp_path / "untied")
    assert "lm_head.weight" in tensors and config["tie_word_embeddings"] is False
    loaded, _ = load_model(tmp_path / "untied")
    torch.testing.assert_close(loaded.unembed.W_U, model.unembed.W_U, rtol=0, atol=0)
    tokens = torch.randint(0, 7, (2, 12))
    with torch.no_grad():
        torch.testing.assert_close(hf_model(tmp_path / "untied")(tokens).logits, model(tokens),
                                   atol=1e-5, rtol=1e-5)


def test_tied_lm_head_that_differs_is_an_error(tmp_path):
    directory = write_hf(tmp_path)
    tensors, _ = read(directory)
    tensors["lm_head.weight"] = tensors["transformer.wte.weight"] + 1
    rewrite(directory, tensors)
    codes, messages = problems(directory)
    assert codes == ["C311"] and "lm_head.weight" in messages[0]


# ---------------------------------------------------------------------------- round trips

@pytest.mark.parametrize("overrides", [
    {},
    dict(layer_norm=False, activation="relu", causal=False, attn_scale=50.0),
    dict(d_head=3, d_mlp=5, d_vocab_out=4, n_layers=3, activation="gelu"),
    dict(n_layers=0),
])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_save_model_round_trip(tmp_path, overrides, dtype):
    model = random_model(**overrides).to(dtype)
    extra = {"vocab": ["BOS", "a", "b"], "output": {"encoding": "categorical"}}
    save_model(model, tmp_path / "m", extra=extra)
    save_model(model, tmp_path / "m", extra=extra)      # overwriting works
    files = sorted(p.name for p in (tmp_path / "m").iterdir())
    # no temporary files left behind; Hugging Face's modeling file beside the config
    assert files == ["config.json", "model.safetensors", "modeling_rasp_ir.py"]
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["model_type"] == "rasp-ir" and config["extra"] == extra
    loaded, metadata = load_model(tmp_path / "m")
    assert loaded.config == model.config and metadata["extra"] == extra
    assert metadata["model_type"] == "rasp-ir" and not loaded.training
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
    tokens = torch.randint(0, 7, (2, 12))
    assert torch.equal(loaded(tokens), model(tokens))


def test_save_model_rejects_non_json_extra_before_writing(tmp_path):
    with pytest.raises(TypeError):
        save_model(random_model(), tmp_path / "m", extra={"bad": object()})
    assert not (tmp_path / "m").exists() or not any((tmp_path / "m").iterdir())


def test_save_hf_gpt2_loads_in_transformers(tmp_path):
    model = random_model(d_mlp=20).double()
    save_hf_gpt2(model, tmp_path / "hf")
    hf = hf_model(tmp_path / "hf").double()
    reloaded, metadata = load_model(tmp_path / "hf")
    assert metadata["model_type"] == "gpt2" and reloaded.config == model.config
    for tokens in token_batches(model.config):
        with torch.no_grad():
            assert (hf(tokens).logits - model(tokens)).abs().max() < 1e-10
            assert torch.equal(reloaded(tokens), model(tokens))


@pytest.mark.skipif(not CHECKPOINTS, reason=f"no shared checkpoints in {SHARED_CHECKPOINTS}")
def test_shared_checkpoint_survives_save_hf_gpt2(tmp_path):
    original = CHECKPOINTS[0]
    model, _ = load_model(original)
    save_hf_gpt2(model, tmp_path / "copy")
    before = load_file(original / "model.safetensors")
    after = load_file(tmp_path / "copy" / "model.safetensors")
    assert before.keys() == after.keys()
    for name in before:
        assert torch.equal(before[name], after[name]), name


def test_save_hf_gpt2_lists_every_reason_it_cannot(tmp_path):
    model = random_model(layer_norm=False, causal=False, d_vocab_out=4, attn_scale=3.0)
    with pytest.raises(CheckpointError) as info:
        save_hf_gpt2(model, tmp_path / "hf")
    assert info.value.codes == ["C312"] * 5     # LayerNorm, causal, vocab, b_U, scale
    assert not (tmp_path / "hf").exists()


# ---------------------------------------------------------------------------- errors

def test_missing_directory_and_files(tmp_path):
    assert problems(tmp_path / "nowhere")[0] == ["C301"]
    (tmp_path / "empty").mkdir()
    codes, messages = problems(tmp_path / "empty")
    assert codes == ["C301", "C301"]
    assert "config.json" in messages[0] and "model.safetensors" in messages[1]
    directory = write_hf(tmp_path)
    (directory / "model.safetensors").rename(directory / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="pickled weights never are"):
        load_model(directory)


def test_truncated_safetensors(tmp_path):
    directory = write_hf(tmp_path)
    data = (directory / "model.safetensors").read_bytes()
    for cut in (len(data) - 7, 100, 3):
        (directory / "model.safetensors").write_bytes(data[:cut])
        codes, messages = problems(directory)
        assert codes == ["C303"]
        assert "model.safetensors" in messages[0] and "unreadable" in messages[0]


def test_config_that_is_not_json_and_truncated_weights_are_both_reported(tmp_path):
    directory = write_hf(tmp_path)
    (directory / "config.json").write_text('{"model_type": "gpt2", ')
    data = (directory / "model.safetensors").read_bytes()
    (directory / "model.safetensors").write_bytes(data[:-1])
    assert problems(directory)[0] == ["C302", "C303"]
    (directory / "config.json").write_text("[1, 2]")
    assert problems(directory)[0][0] == "C302"


def test_unknown_model_type(tmp_path):
    directory = write_hf(tmp_path)
    rewrite(directory, config={**read(directory)[1], "model_type": "llama"})
    codes, messages = problems(directory)
    assert codes == ["C304"] and "llama" in messages[0]


def test_wrong_shape_and_missing_key_are_both_reported(tmp_path):
    directory = write_hf(tmp_path)
    tensors, _ = read(directory)
    tensors["transformer.h.1.mlp.c_fc.weight"] = torch.zeros(8, 31)
    del tensors["transformer.h.0.attn.c_attn.bias"]
    tensors["transformer.h.0.attn.rotary"] = torch.zeros(3)
    tensors["transformer.wpe.weight"] = tensors["transformer.wpe.weight"].long()
    rewrite(directory, tensors)
    codes, messages = problems(directory)
    assert sorted(codes) == ["C307", "C308", "C309", "C310"]
    text = "\n".join(messages)
    for fragment in ("'transformer.h.1.mlp.c_fc.weight' has shape [8, 31], expected [8, 32]",
                     "missing weight 'transformer.h.0.attn.c_attn.bias' of shape [24]",
                     "unexpected weight 'transformer.h.0.attn.rotary'",
                     "'transformer.wpe.weight' has dtype I64",
                     str(directory / "model.safetensors")):
        assert fragment in text


def test_config_fields_missing_wrong_or_inconsistent(tmp_path):
    directory = write_hf(tmp_path)
    _, config = read(directory)
    del config["n_layer"]
    rewrite(directory, config={**config, "n_head": "2", "activation_function": "swiglu"})
    codes, messages = problems(directory)
    assert codes == ["C305"] * 3
    assert any("'n_layer'" in m for m in messages)
    assert any("'n_head' is \"2\"" in m for m in messages)
    rewrite(directory, config={**config, "n_layer": 2, "n_head": 3,
                               "scale_attn_by_inverse_layer_idx": True})
    codes, messages = problems(directory)
    assert codes == ["C306", "C306"] and "n_embd = 8 is not divisible by n_head = 3" in messages[0]


def test_config_that_disagrees_with_the_weights_lists_every_missing_weight(tmp_path):
    directory = write_hf(tmp_path)
    _, config = read(directory)
    rewrite(directory, config={**config, "n_layer": 3, "n_positions": 16})
    codes, messages = problems(directory)
    assert codes.count("C307") == 12 and codes.count("C309") == 1
    assert any("'transformer.wpe.weight' has shape [12, 8], expected [16, 8]" in m
               for m in messages)


def test_no_prefix_duplicates_are_unexpected(tmp_path):
    directory = write_hf(tmp_path)
    tensors, _ = read(directory)
    tensors["wte.weight"] = tensors["transformer.wte.weight"].clone()
    rewrite(directory, tensors)
    assert problems(directory)[0] == ["C308"]


def test_rasp_ir_config_and_weight_problems(tmp_path):
    save_model(random_model(layer_norm=False), tmp_path / "m", extra={"vocab": [1, 2]})
    tensors, config = read(tmp_path / "m")
    del tensors["blocks.0.attn.W_Q"]
    tensors["blocks.0.ln1.w"] = torch.ones(8)
    rewrite(tmp_path / "m", tensors)
    codes, messages = problems(tmp_path / "m")
    assert sorted(codes) == ["C307", "C308"]
    assert any("'blocks.0.attn.W_Q' of shape [2, 8, 4]" in m for m in messages)
    rewrite(tmp_path / "m", config={**config, "activation": "tanh", "d_model": 0, "colour": "red",
                                    "extra": [1], "format_version": 9})
    assert sorted(problems(tmp_path / "m")[0]) == ["C305"] * 4 + ["C306"]
    rewrite(tmp_path / "m", config={**config, "d_head": None})
    assert problems(tmp_path / "m")[0] == ["C305"]


@pytest.mark.parametrize("save", [save_hf_gpt2, save_model])
def test_tied_model_with_dropout_saves_as_the_untied_one(tmp_path, save):
    untied = random_model()
    config = TransformerConfig(**untied.config.to_dict(), tie_embeddings=True, dropout=0.1)
    tied = Transformer(config)
    tied.load_state_dict(untied.state_dict())
    save(untied, tmp_path / "untied")
    save(tied, tmp_path / "tied")
    for name in ("config.json", "model.safetensors"):
        assert (tmp_path / "tied" / name).read_bytes() == (tmp_path / "untied" / name).read_bytes()
    loaded, _ = load_model(tmp_path / "tied")
    assert loaded.config == untied.config
