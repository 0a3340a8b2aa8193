"""The transformer module: config defaults, a hand-computed LayerNorm-free model, the cache,
masking, batching and dtypes. Parity with Hugging Face GPT-2 is in test_checkpoint.py."""

import math

import pytest
import torch

from compiler.transformer import Transformer, TransformerConfig


def random_model(seed=0, **overrides) -> Transformer:
    fields = dict(vocab_size=7, n_positions=12, d_model=8, n_layers=2, n_heads=2)
    torch.manual_seed(seed)
    model = Transformer(TransformerConfig(**{**fields, **overrides}))
    with torch.no_grad():   # non-zero biases and LayerNorm parameters, so every term is exercised
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return model.eval()


def test_config_defaults_follow_gpt2():
    c = TransformerConfig(vocab_size=10, n_positions=20, d_model=64, n_layers=2, n_heads=4)
    assert (c.d_head, c.d_mlp, c.d_vocab_out) == (16, 256, 10)
    assert c.layer_norm and c.causal and c.activation == "gelu_new"
    assert c.scale == pytest.approx(1 / math.sqrt(16))
    assert TransformerConfig(**{**c.to_dict(), "attn_scale": 100}).scale == 100.0
    assert TransformerConfig(**c.to_dict()) == c


@pytest.mark.parametrize("bad", [dict(activation="tanh"), dict(n_heads=0), dict(layer_norm=1)])
def test_config_rejects_bad_fields(bad):
    with pytest.raises((ValueError, TypeError)):
        TransformerConfig(**{**dict(vocab_size=3, n_positions=4, d_model=4, n_layers=1,
                                    n_heads=1), **bad})


def test_parameter_names_and_shapes_are_transformer_lens():
    m = random_model(d_head=3, d_mlp=5, d_vocab_out=4)
    shapes = {k: tuple(v.shape) for k, v in m.state_dict().items()}
    assert shapes["embed.W_E"] == (7, 8) and shapes["pos_embed.W_pos"] == (12, 8)
    assert shapes["blocks.1.attn.W_Q"] == (2, 8, 3) and shapes["blocks.1.attn.b_V"] == (2, 3)
    assert shapes["blocks.1.attn.W_O"] == (2, 3, 8) and shapes["blocks.1.attn.b_O"] == (8,)
    assert shapes["blocks.0.mlp.W_in"] == (8, 5) and shapes["blocks.0.mlp.W_out"] == (5, 8)
    assert shapes["blocks.0.ln1.w"] == (8,) and shapes["ln_final.b"] == (8,)
    assert shapes["unembed.W_U"] == (8, 4) and shapes["unembed.b_U"] == (4,)
    assert len(shapes) == 2 + 2 * 16 + 2 + 2
    no_ln = random_model(layer_norm=False).state_dict()
    assert not [k for k in no_ln if "ln" in k] and len(no_ln) == 2 + 2 * 12 + 2


def fraction_model(causal: bool) -> Transformer:
    """LayerNorm off, relu, uniform attention; residual dims [is_0, is_1, frac_0, mlp].

    The head averages is_0 into frac_0; the MLP computes relu(frac_0 - 0.5) into dim 3;
    the logits are [relu(frac_0 - 0.5), frac_0].
    """
    cfg = TransformerConfig(vocab_size=2, n_positions=8, d_model=4, n_layers=1, n_heads=1,
                            d_head=1, d_mlp=1, layer_norm=False, activation="relu", causal=causal)
    m = Transformer(cfg)
    with torch.no_grad():
        for p in m.parameters():
            p.zero_()
        m.embed.W_E[0, 0] = m.embed.W_E[1, 1] = 1.0
        a, mlp = m.blocks[0].attn, m.blocks[0].mlp
        a.W_V[0, 0, 0] = 1.0        # value = is_0; W_Q = W_K = 0 gives uniform attention
        a.W_O[0, 0, 2] = 1.0
        mlp.W_in[2, 0], mlp.b_in[0] = 1.0, -0.5
        mlp.W_out[0, 3] = 1.0
        m.unembed.W_U[3, 0] = m.unembed.W_U[2, 1] = 1.0
    return m.eval()


def test_hand_set_model_bidirectional_relu_without_layer_norm():
    tokens = torch.tensor([[0, 0, 1, 0], [1, 1, 1, 0]])
    logits, cache = fraction_model(causal=False)(tokens, return_cache=True)
    # Bidirectional: every position sees the whole sequence (3/4 and 1/4 zeros).
    expected = torch.tensor([[[0.25, 0.75]] * 4, [[0.0, 0.25]] * 4])
    torch.testing.assert_close(logits, expected)
    torch.testing.assert_close(cache["blocks.0.attn.hook_pattern"], torch.full((2, 1, 4, 4), 0.25))
    assert not any("hook_scale" in k for k in cache)


def test_hand_set_model_causal_and_padding_mask():
    tokens = torch.tensor([[0, 0, 1, 0]])
    prefix_fractions = torch.tensor([1.0, 1.0, 2 / 3, 0.75])
    logits = fraction_model(causal=True)(tokens)
    torch.testing.assert_close(logits[0, :, 1], prefix_fractions)
    torch.testing.assert_close(logits[0, :, 0], (prefix_fractions - 0.5).clamp(min=0))
    # A padding mask hides the last key from every query of the bidirectional model.
    masked = fraction_model(causal=False)(tokens, attention_mask=torch.tensor([[1, 1, 1, 0]]))
    torch.testing.assert_close(masked[0, :, 1], torch.full((4,), 2 / 3))


def test_cache_holds_the_residual_stream_and_patterns():
    m = random_model()
    tokens = torch.randint(0, 7, (3, 5))
    logits, cache = m(tokens, return_cache=True)
    close = torch.testing.assert_close
    close(cache["blocks.0.hook_resid_pre"], cache["hook_embed"] + cache["hook_pos_embed"])
    for i in range(2):
        b = f"blocks.{i}."
        close(cache[b + "hook_resid_mid"], cache[b + "hook_resid_pre"] + cache[b + "hook_attn_out"])
        close(cache[b + "hook_resid_post"], cache[b + "hook_resid_mid"] + cache[b + "hook_mlp_out"])
        pattern = cache[b + "attn.hook_pattern"]
        assert pattern.shape == (3, 2, 5, 5)
        torch.testing.assert_close(pattern.sum(-1), torch.ones(3, 2, 5))
        assert (pattern.triu(1) == 0).all()          # causal
        assert cache[b + "attn.hook_z"].shape == (3, 5, 2, 4)
        assert cache[b + "mlp.hook_post"].shape == (3, 5, 32)
    resid = cache["blocks.1.hook_resid_post"]
    normalised = (resid - resid.mean(-1, keepdim=True)) / cache["ln_final.hook_scale"]
    close(logits, (normalised * m.ln_final.w + m.ln_final.b) @ m.unembed.W_U + m.unembed.b_U)
    close(m(tokens), logits)


def test_causal_model_ignores_the_future_and_batches_agree():
    m = random_model()
    tokens = torch.randint(0, 7, (4, 9))
    logits = m(tokens)
    changed = tokens.clone()
    changed[:, 5:] = (changed[:, 5:] + 1) % 7
    torch.testing.assert_close(m(changed)[:, :5], logits[:, :5])
    for row in range(4):
        torch.testing.assert_close(m(tokens[row:row + 1]), logits[row:row + 1],
                                   atol=1e-6, rtol=1e-5)


def test_float64_and_odd_shapes():
    m = random_model(d_head=3, d_mlp=5, d_vocab_out=4, causal=False, attn_scale=2.0).double()
    logits = m(torch.randint(0, 7, (2, 12)))
    assert logits.dtype == torch.float64 and logits.shape == (2, 12, 4)
    assert m(torch.zeros(0, 3, dtype=torch.long)).shape == (0, 3, 4)


def test_forward_rejects_long_sequences_and_unknown_tokens():
    m = random_model()
    with pytest.raises(ValueError, match="n_positions"):
        m(torch.zeros(1, 13, dtype=torch.long))
    with pytest.raises(ValueError, match="token ids"):
        m(torch.tensor([[0, 7]]))


def test_runtime_fields_are_not_saved_and_checked():
    c = TransformerConfig(vocab_size=5, n_positions=6, d_model=8, n_layers=1, n_heads=2,
                          dropout=0.1, tie_embeddings=True,
                          ln_scales={"ln_final": 2, "blocks.0.ln1": 1, "blocks.0.ln2": 3})
    assert not {"dropout", "tie_embeddings", "ln_scales"} & set(c.to_dict())
    assert c.ln_scale("blocks.0.ln2") == 3.0 and c.ln_scale("nowhere") is None
    with pytest.raises(ValueError):                     # every LayerNorm needs its scale
        TransformerConfig(**c.to_dict(), ln_scales={"ln_final": 2.0})
    with pytest.raises(ValueError):                     # tied: one vocabulary in and out
        TransformerConfig(**{**c.to_dict(), "d_vocab_out": 3}, tie_embeddings=True)


def test_tied_unembedding_is_the_embedding():
    tied = random_model(tie_embeddings=True, dropout=0.5)
    assert tied.W_U._base is tied.embed.W_E and not tied.unembed.b_U.any()
    assert "unembed.W_U" not in dict(tied.named_parameters())
    state = tied.state_dict()                             # an untied model's names and values
    assert list(state)[-2:] == ["unembed.W_U", "unembed.b_U"]
    untied = Transformer(TransformerConfig(**tied.config.to_dict())).eval()
    untied.load_state_dict(state)
    tokens = torch.randint(0, 7, (2, 12))
    # eval mode: no dropout; W_E.T and a contiguous W_U may round differently in a matmul
    torch.testing.assert_close(untied(tokens), tied(tokens))
    again = Transformer(tied.config)
    again.load_state_dict(untied.state_dict())
    assert torch.equal(again.embed.W_E, tied.embed.W_E)
    with torch.no_grad():
        untied.unembed.W_U.add_(1.0)
    with pytest.raises(RuntimeError, match="transposed"):
        again.load_state_dict(untied.state_dict())


def test_fixed_layer_norm_scales_and_their_stand_ins():
    model = random_model()
    names = model.config.layer_norm_names
    assert names == ["blocks.0.ln1", "blocks.0.ln2", "blocks.1.ln1", "blocks.1.ln2", "ln_final"]
    config = TransformerConfig(**model.config.to_dict(), ln_scales=dict.fromkeys(names, 0.5))
    linear = Transformer(config).eval()
    linear.load_state_dict(model.state_dict())
    assert linear.ln_final.fixed_scale == 0.5
    tokens = torch.randint(0, 7, (2, 12))
    assert not torch.allclose(linear(tokens), model(tokens))
    stand_ins = {name: torch.tensor(0.5, requires_grad=True) for name in names}
    out = model(tokens, ln_scales=stand_ins)
    assert torch.equal(out, linear(tokens))
    out.sum().backward()
    assert all(t.grad is not None for t in stand_ins.values())
