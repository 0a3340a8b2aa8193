"""TransformerLens's configuration and state dict, to and from ours, without TransformerLens.

The transformer's weights already have TransformerLens's names and shapes (`embed.W_E`,
`blocks.0.attn.W_Q` [n_heads, d_model, d_head], `unembed.W_U`), so a HookedTransformer of the
GPT-2 kind and a rasp-ir Transformer differ only in their configuration's field names and in
what TransformerLens leaves out of a processed model:

- `normalization_type: "LNPre"` (LayerNorm folded into the readers): no ln weights; the
  LayerNorm is a plain one with w = 1 and b = 0;
- `attn_only: true`: no MLP; the block's MLP is one zero unit (its output is exactly 0);
- the attention's causal-mask buffers (`attn.mask`, `attn.IGNORE`) are not weights.

A TransformerLens directory (written by `rasp export --to transformer-lens` or
`compiler.export.save_hooked_transformer`) holds `model.safetensors` (the HookedTransformer's
state dict) and `config.json` = {"model_type": "transformer-lens", "cfg": {the
HookedTransformerConfig fields}, "extra": {...}}; a bare dump of the config's fields (no
model_type) is read too.
"""

from __future__ import annotations

import math
import re

import torch

from .transformer import TransformerConfig

MODEL_TYPE = "transformer-lens"
BUFFER = re.compile(r"blocks\.\d+\.attn\.(mask|IGNORE)")
# TransformerLens activation names -> ours (gelu_pytorch_tanh is the same function as gelu_new)
ACTIVATIONS = {"gelu_new": "gelu_new", "gelu_pytorch_tanh": "gelu_new", "gelu": "gelu",
               "relu": "relu"}
# fields whose non-default value is a model this transformer cannot run: {field: default}
_UNSUPPORTED = {
    "positional_embedding_type": "standard", "gated_mlp": False, "parallel_attn_mlp": False,
    "use_local_attn": False, "scale_attn_by_inverse_layer_idx": False, "final_rms": False,
    "post_embedding_ln": False, "use_normalization_before_and_after": False,
    "use_qk_norm": False, "n_key_value_heads": None, "num_experts": None,
    "attn_scores_soft_cap": -1.0, "output_logits_soft_cap": -1.0,
}


def looks_like_tl(raw: dict) -> bool:
    """Whether a config.json without model_type is a dump of HookedTransformerConfig."""
    return "model_type" not in raw and {"d_model", "n_layers", "n_ctx", "d_vocab"} <= raw.keys()


def tl_config(c: TransformerConfig) -> dict:
    """HookedTransformerConfig fields (JSON-ready) for a model with config `c`."""
    scale = c.scale
    default = math.isclose(scale, c.d_head ** -0.5, rel_tol=1e-12)
    return {
        "d_model": c.d_model, "d_head": c.d_head, "n_layers": c.n_layers,
        "n_ctx": c.n_positions, "n_heads": c.n_heads, "d_mlp": c.d_mlp,
        "d_vocab": c.vocab_size, "d_vocab_out": c.d_vocab_out, "act_fn": c.activation,
        "normalization_type": "LN" if c.layer_norm else None, "eps": c.ln_eps,
        "attention_dir": "causal" if c.causal else "bidirectional",
        # TransformerLens divides scores by attn_scale; ours multiplies them by `scale`
        "use_attn_scale": scale != 1.0,
        "attn_scale": math.sqrt(c.d_head) if default else (1 / scale if scale != 1.0 else 1.0),
        "positional_embedding_type": "standard", "default_prepend_bos": False,
        "original_architecture": "rasp-ir", "model_name": "rasp-ir",
    }


def config_from_tl(cfg: dict) -> tuple[TransformerConfig | None, dict, list[str]]:
    """(our config, how to complete the state dict, problems) from HookedTransformerConfig
    fields. `how` is {"unit_layer_norm": bool, "zero_mlp": bool}; each problem names its field;
    with any problem the config is None."""
    problems: list[str] = []

    def fail(name, message):
        problems.append(f"field 'cfg.{name}' {message}")

    def get(name, test, wanted, default=...):
        if name not in cfg or cfg[name] is None and default is not ...:
            if default is ...:
                fail(name, f"missing ({wanted})")
            return None if default is ... else default
        if not test(cfg[name]):
            fail(name, f"is {cfg[name]!r}, expected {wanted}")
            return None
        return cfg[name]

    def positive(v):
        return isinstance(v, int) and not isinstance(v, bool) and v > 0

    def count(v):
        return isinstance(v, int) and not isinstance(v, bool) and v >= 0

    def real(v):
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

    attn_only = get("attn_only", lambda v: isinstance(v, bool), "true or false", False)
    d_model, d_head = get("d_model", positive, "a positive integer"), \
        get("d_head", positive, "a positive integer")
    n_layers, n_heads = get("n_layers", count, "a non-negative integer"), \
        get("n_heads", positive, "a positive integer")
    n_ctx, d_vocab = get("n_ctx", positive, "a positive integer"), \
        get("d_vocab", positive, "a positive integer")
    d_vocab_out = get("d_vocab_out", lambda v: positive(v) or v == -1,
                      "a positive integer or -1", -1)
    d_mlp = 1 if attn_only else get("d_mlp", positive, "a positive integer")
    act = "relu" if attn_only else get("act_fn", lambda v: v in ACTIVATIONS,
                                       "one of " + ", ".join(ACTIVATIONS))
    norm = get("normalization_type", lambda v: v in ("LN", "LNPre"), '"LN", "LNPre" or null',
               None)
    eps = get("eps", lambda v: real(v) and v > 0, "a positive number", 1e-5)
    direction = get("attention_dir", lambda v: v in ("causal", "bidirectional"),
                    '"causal" or "bidirectional"', "causal")
    use_scale = get("use_attn_scale", lambda v: isinstance(v, bool), "true or false", True)
    scale = get("attn_scale", lambda v: real(v) and (v > 0 or v == -1), "a positive number",
                -1.0)
    for name, default in _UNSUPPORTED.items():
        value = cfg.get(name, default)
        if value != default and not (value is None and default is False):
            fail(name, f"is {value!r}: not supported (rasp-ir runs {default!r} only)")
    if problems:
        return None, {}, problems
    if not use_scale:
        attn_scale = 1.0
    elif scale == -1.0 or math.isclose(scale, math.sqrt(d_head), rel_tol=1e-12):
        attn_scale = None
    else:
        attn_scale = 1 / scale
    try:
        config = TransformerConfig(
            vocab_size=d_vocab, n_positions=n_ctx, d_model=d_model, n_layers=n_layers,
            n_heads=n_heads, d_head=d_head, d_mlp=d_mlp,
            d_vocab_out=d_vocab if d_vocab_out == -1 else d_vocab_out,
            layer_norm=norm is not None, ln_eps=eps, activation=ACTIVATIONS[act],
            causal=direction == "causal", attn_scale=attn_scale)
    except (TypeError, ValueError) as exc:
        return None, {}, [f"fields of 'cfg' are inconsistent: {exc}"]
    return config, {"unit_layer_norm": norm == "LNPre", "zero_mlp": attn_only}, []


def completed(tensors: dict[str, torch.Tensor], config: TransformerConfig,
              how: dict) -> dict[str, torch.Tensor]:
    """A TransformerLens state dict (buffers already left out) as our full state dict: unit
    LayerNorms for LNPre, one zero MLP unit for attn_only (see the module docstring)."""
    sd = dict(tensors)
    like = sd["embed.W_E"]
    D = config.d_model
    if how.get("unit_layer_norm"):
        for name in config.layer_norm_names:
            sd.setdefault(f"{name}.w", like.new_ones(D))
            sd.setdefault(f"{name}.b", like.new_zeros(D))
    if how.get("zero_mlp"):
        for i in range(config.n_layers):
            p = f"blocks.{i}.mlp."
            sd.update({p + "W_in": like.new_zeros(D, 1), p + "b_in": like.new_zeros(1),
                       p + "W_out": like.new_zeros(1, D), p + "b_out": like.new_zeros(D)})
    return sd


def synthesized(config: TransformerConfig, how: dict) -> set[str]:
    """The state-dict names `completed` adds (a TransformerLens file does not hold them)."""
    names = set()
    if how.get("unit_layer_norm"):
        names |= {f"{n}.{p}" for n in config.layer_norm_names for p in "wb"}
    if how.get("zero_mlp"):
        names |= {f"blocks.{i}.mlp.{p}" for i in range(config.n_layers)
                  for p in ("W_in", "b_in", "W_out", "b_out")}
    return names
