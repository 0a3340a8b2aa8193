"""The one transformer of the project: a GPT-2-style decoder with TransformerLens parameter names.

It runs trained Hugging Face GPT-2 checkpoints (pre-LayerNorm, gelu_new, causal) and compiled
RASP programs (LayerNorm off, relu, possibly bidirectional, a chosen attention scale). Training's
dropout and tied embeddings, and LLN-A's fixed LayerNorm scales, are fields of its config too.
Weights use the `x @ W` convention of TransformerLens and of GPT-2's Conv1D, with heads split
out: W_Q is [n_heads, d_model, d_head], W_O is [n_heads, d_head, d_model]. Shapes in comments
use B batch, T sequence, H heads, D d_model, E d_head, M d_mlp, V vocabulary.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from attrs import asdict, field, frozen, validators
from torch import nn

ACTIVATIONS = {
    # GPT-2's tanh approximation; F.gelu(approximate="tanh") is the same function as HF's gelu_new.
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "gelu": F.gelu,
    "relu": F.relu,
}

_positive = [validators.instance_of(int), validators.gt(0)]
# Fields that say how the module runs rather than what its weights are: checkpoints leave them
# out (`to_dict`), and their defaults leave the forward pass as it always was.
_NOT_SAVED = {"saved": False}


def _scales(scales) -> tuple | None:
    return None if scales is None else tuple(sorted((str(n), float(s))
                                                    for n, s in dict(scales).items()))


@frozen(kw_only=True)
class TransformerConfig:
    """Sizes and switches of a Transformer; derived sizes default to GPT-2's choices."""

    vocab_size: int = field(validator=_positive)      # input tokens
    n_positions: int = field(validator=_positive)     # longest sequence
    d_model: int = field(validator=_positive)
    n_layers: int = field(validator=[validators.instance_of(int), validators.ge(0)])
    n_heads: int = field(validator=_positive)
    d_head: int = field(validator=_positive)          # GPT-2: d_model // n_heads
    d_mlp: int = field(validator=_positive)           # GPT-2: 4 * d_model
    d_vocab_out: int = field(validator=_positive)     # unembedding width; default vocab_size
    layer_norm: bool = field(default=True, validator=validators.instance_of(bool))
    ln_eps: float = field(default=1e-5, converter=float)
    activation: str = field(default="gelu_new", validator=validators.in_(ACTIVATIONS))
    causal: bool = field(default=True, validator=validators.instance_of(bool))
    attn_scale: float | None = field(      # multiplies q·k; None means 1 / sqrt(d_head)
        default=None, converter=lambda s: None if s is None else float(s))
    # GPT-2's dropout probability (embeddings, attention pattern, attention and MLP outputs),
    # applied in training mode only
    dropout: float = field(default=0.0, converter=float, metadata=_NOT_SAVED,
                           validator=[validators.ge(0), validators.lt(1)])
    # GPT-2's tied lm_head: W_U is W_E transposed, one Parameter, and b_U stays 0; the state
    # dict still holds unembed.W_U, so a tied model saves and loads as an untied one
    tie_embeddings: bool = field(default=False, metadata=_NOT_SAVED,
                                 validator=validators.instance_of(bool))
    # LLN-A (extractor/decompile/linearise.py): {LayerNorm name: constant} dividing in place of
    # each position's sqrt(var + eps); kept as sorted (name, scale) pairs
    ln_scales: tuple | None = field(default=None, converter=_scales, metadata=_NOT_SAVED)

    @tie_embeddings.validator
    def _one_vocabulary(self, attribute, tied):
        if tied and self.d_vocab_out != self.vocab_size:
            raise ValueError("tied embeddings need d_vocab_out = vocab_size")

    @ln_scales.validator
    def _every_layer_norm(self, attribute, scales):
        if scales is not None and sorted(dict(scales)) != sorted(self.layer_norm_names):
            raise ValueError(f"ln_scales names {sorted(dict(scales))}; the LayerNorms are "
                             f"{self.layer_norm_names}")

    @d_head.default
    def _d_head(self):
        return self.d_model // self.n_heads if self.n_heads else 0  # 0 heads: the validator says so

    @d_mlp.default
    def _d_mlp(self):
        return 4 * self.d_model

    @d_vocab_out.default
    def _d_vocab_out(self):
        return self.vocab_size

    @property
    def scale(self) -> float:
        """The factor applied to attention scores."""
        return 1 / math.sqrt(self.d_head) if self.attn_scale is None else self.attn_scale

    @property
    def layer_norm_names(self) -> list[str]:
        """The LayerNorms' names, as `ln_scales` and the cache's hook names give them."""
        if not self.layer_norm:
            return []
        return [f"blocks.{i}.{ln}" for i in range(self.n_layers) for ln in ("ln1", "ln2")] + [
            "ln_final"]

    def ln_scale(self, name: str) -> float | None:
        """The LLN-A constant of the LayerNorm `name`, None for a real LayerNorm."""
        return dict(self.ln_scales or ()).get(name)

    def to_dict(self) -> dict:
        """The fields a checkpoint saves, as a JSON-ready dict (defaults resolved); dropout, tied
        embeddings and LLN-A scales are not among them."""
        return asdict(self, filter=lambda a, _: a.metadata.get("saved", True))


def _param(*shape: int) -> nn.Parameter:
    return nn.Parameter(torch.empty(*shape))


def _save(cache: dict | None, name: str, value: torch.Tensor) -> None:
    if cache is not None:
        cache[name] = value


def _dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    # p = 0 draws no random numbers: the forward pass and the RNG stream are as without dropout
    return F.dropout(x, p) if p and training else x


class LayerNorm(nn.Module):
    def __init__(self, cfg: TransformerConfig, name: str):
        super().__init__()
        self.eps = cfg.ln_eps
        self.w, self.b = _param(cfg.d_model), _param(cfg.d_model)
        # LLN-A's constant in place of the per-position scale sqrt(var + eps), None for the real
        # LayerNorm; the path decompiler reads it. Not a weight.
        self.fixed_scale: float | None = cfg.ln_scale(name)

    def forward(self, x, cache=None, name="", scale=None):
        # scale: a tensor standing in for fixed_scale, so that fitting it can differentiate
        if cache is not None:
            # The per-position scale is what a linearised LayerNorm treats as a constant.
            cache[name + "hook_scale"] = (x.var(-1, unbiased=False, keepdim=True) + self.eps).sqrt()
        scale = self.fixed_scale if scale is None else scale
        if scale is not None:
            return (x - x.mean(-1, keepdim=True)) / scale * self.w + self.b
        return F.layer_norm(x, x.shape[-1:], self.w, self.b, self.eps)


class Attention(nn.Module):
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        H, D, E = cfg.n_heads, cfg.d_model, cfg.d_head
        self.W_Q, self.W_K, self.W_V = _param(H, D, E), _param(H, D, E), _param(H, D, E)
        self.b_Q, self.b_K, self.b_V = _param(H, E), _param(H, E), _param(H, E)
        self.W_O, self.b_O = _param(H, E, D), _param(D)
        self.scale, self.dropout = cfg.scale, cfg.dropout

    def forward(self, x, allowed, cache=None, name=""):
        # x: (B, T, D); allowed: (B or 1, 1, T, T) bool, True where a query may read a key
        q = torch.einsum("btd,hde->bhte", x, self.W_Q) + self.b_Q[:, None]  # (B, H, T, E)
        k = torch.einsum("btd,hde->bhte", x, self.W_K) + self.b_K[:, None]  # (B, H, T, E)
        v = torch.einsum("btd,hde->bhte", x, self.W_V) + self.b_V[:, None]  # (B, H, T, E)
        scores = (q @ k.transpose(-1, -2)) * self.scale                     # (B, H, T, T)
        # finfo.min rather than -inf, as GPT-2 does: a row with no allowed key stays finite.
        scores = scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)
        pattern = _dropout(scores.softmax(dim=-1), self.dropout, self.training)  # (B, H, T, T)
        z = pattern @ v                                                     # (B, H, T, E)
        _save(cache, name + "hook_pattern", pattern)
        _save(cache, name + "hook_z", z.transpose(1, 2))                    # (B, T, H, E)
        return torch.einsum("bhte,hed->btd", z, self.W_O) + self.b_O       # (B, T, D)


class MLP(nn.Module):
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.W_in, self.b_in = _param(cfg.d_model, cfg.d_mlp), _param(cfg.d_mlp)
        self.W_out, self.b_out = _param(cfg.d_mlp, cfg.d_model), _param(cfg.d_model)
        self.act = ACTIVATIONS[cfg.activation]

    def forward(self, x, cache=None, name=""):
        pre = x @ self.W_in + self.b_in                                     # (B, T, M)
        post = self.act(pre)
        _save(cache, name + "hook_pre", pre)
        _save(cache, name + "hook_post", post)
        return post @ self.W_out + self.b_out                               # (B, T, D)


class Block(nn.Module):
    def __init__(self, cfg: TransformerConfig, name: str):
        super().__init__()
        self.ln1 = LayerNorm(cfg, name + "ln1") if cfg.layer_norm else None
        self.attn = Attention(cfg)
        self.ln2 = LayerNorm(cfg, name + "ln2") if cfg.layer_norm else None
        self.mlp = MLP(cfg)
        self.dropout = cfg.dropout

    def forward(self, x, allowed, cache=None, name="", ln_scales=None):
        # x: (B, T, D); ln_scales: {LayerNorm name: scale tensor} standing in for fixed scales
        scales = ln_scales or {}
        _save(cache, name + "hook_resid_pre", x)
        h = self.ln1(x, cache, name + "ln1.", scales.get(name + "ln1")) if self.ln1 else x
        attn_out = _dropout(self.attn(h, allowed, cache, name + "attn."), self.dropout,
                            self.training)                                  # (B, T, D)
        x = x + attn_out
        _save(cache, name + "hook_attn_out", attn_out)
        _save(cache, name + "hook_resid_mid", x)
        h = self.ln2(x, cache, name + "ln2.", scales.get(name + "ln2")) if self.ln2 else x
        mlp_out = _dropout(self.mlp(h, cache, name + "mlp."), self.dropout, self.training)
        x = x + mlp_out
        _save(cache, name + "hook_mlp_out", mlp_out)
        _save(cache, name + "hook_resid_post", x)
        return x


class Transformer(nn.Module):
    """A GPT-2-style decoder; its state dict uses TransformerLens names (blocks.0.attn.W_Q)."""

    def __init__(self, config: TransformerConfig):
        super().__init__()
        c = self.config = config
        self.embed = nn.Module()
        self.embed.W_E = _param(c.vocab_size, c.d_model)
        self.pos_embed = nn.Module()
        self.pos_embed.W_pos = _param(c.n_positions, c.d_model)
        self.blocks = nn.ModuleList(Block(c, f"blocks.{i}.") for i in range(c.n_layers))
        self.ln_final = LayerNorm(c, "ln_final") if c.layer_norm else None
        self.unembed = nn.Module()
        if c.tie_embeddings:
            # GPT-2's lm_head has no bias: a buffer, which no optimiser moves
            self.unembed.register_buffer("b_U", torch.zeros(c.d_vocab_out))
            self.register_state_dict_post_hook(_add_tied_unembedding)
            self.register_load_state_dict_pre_hook(_drop_tied_unembedding)
        else:
            self.unembed.W_U = _param(c.d_model, c.d_vocab_out)
            self.unembed.b_U = _param(c.d_vocab_out)
        self.reset_parameters()

    @property
    def W_U(self) -> torch.Tensor:
        """The unembedding [d_model, d_vocab_out]: W_E transposed when tied."""
        return self.embed.W_E.T if self.config.tie_embeddings else self.unembed.W_U

    @torch.no_grad()
    def reset_parameters(self, std: float = 0.02, generator: torch.Generator | None = None) -> None:
        """GPT-2's initialisation: weights N(0, std), biases 0, LayerNorm scales 1."""
        for name, p in self.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            if leaf == "w":
                p.fill_(1.0)
            elif leaf.startswith("b"):
                p.zero_()
            elif p.device.type != "meta":
                p.normal_(0.0, std, generator=generator)

    def forward(self, tokens: torch.Tensor, attention_mask: torch.Tensor | None = None,
                return_cache: bool = False, position_ids: torch.Tensor | None = None,
                ln_scales: dict[str, torch.Tensor] | None = None):
        """Logits [batch, seq, d_vocab_out] for tokens [batch, seq].

        attention_mask [batch, seq] (1 = real token, 0 = padding) hides padded keys.
        position_ids [batch, seq] (or [seq]) picks the rows of W_pos; the default is 0..seq-1.
        Trained checkpoints of the D-RASP paper saw random position offsets in training, so
        training passes offset positions here. With return_cache=True, returns (logits, cache) where cache maps
        TransformerLens hook names to activations: hook_embed, hook_pos_embed, and per block
        `blocks.L.` hook_resid_pre, attn.hook_pattern [B, H, T, T], attn.hook_z, hook_attn_out,
        hook_resid_mid, mlp.hook_pre/hook_post, hook_mlp_out, hook_resid_post; with LayerNorm
        also ln1/ln2/ln_final.hook_scale [B, T, 1]. ln_scales {LayerNorm name: scale tensor}
        stand in for the config's LLN-A constants, so that they can be fitted by gradient.
        """
        c = self.config
        B, T = tokens.shape
        if T > c.n_positions:
            raise ValueError(f"sequence of length {T} is longer than n_positions = {c.n_positions}")
        if tokens.numel() and (tokens.min() < 0 or tokens.max() >= c.vocab_size):
            raise ValueError(f"token ids must lie in 0..{c.vocab_size - 1}")
        if position_ids is not None and position_ids.numel() and (
                position_ids.min() < 0 or position_ids.max() >= c.n_positions):
            raise ValueError(f"position ids must lie in 0..{c.n_positions - 1}")
        cache = {} if return_cache else None
        # F.embedding rather than W_E[tokens]: the same values, and a backward pass that is
        # deterministic on CPU (indexing's backward adds rows in a thread-dependent order).
        embed = F.embedding(tokens, self.embed.W_E)                         # (B, T, D)
        if position_ids is None:
            pos = self.pos_embed.W_pos[:T].expand(B, T, -1)                 # (B, T, D)
        else:
            pos = F.embedding(position_ids, self.pos_embed.W_pos).expand(B, T, -1)  # (B, T, D)
        _save(cache, "hook_embed", embed)
        _save(cache, "hook_pos_embed", pos)
        x = _dropout(embed + pos, c.dropout, self.training)                # (B, T, D)
        allowed = torch.ones(T, T, dtype=torch.bool, device=tokens.device)
        if c.causal:
            allowed = allowed.tril()
        allowed = allowed[None, None]                                       # (1, 1, T, T)
        if attention_mask is not None:
            allowed = allowed & attention_mask.bool()[:, None, None, :]     # (B, 1, T, T)
        for i, block in enumerate(self.blocks):
            x = block(x, allowed, cache, f"blocks.{i}.", ln_scales)
        if self.ln_final is not None:
            x = self.ln_final(x, cache, "ln_final.", (ln_scales or {}).get("ln_final"))
        logits = x @ self.W_U + self.unembed.b_U                            # (B, T, V)
        return (logits, cache) if return_cache else logits


def _add_tied_unembedding(model: Transformer, state: dict, prefix: str, metadata) -> None:
    """State-dict hook of a tied model: unembed.W_U as an untied model has it, a copy of W_E
    transposed, just before unembed.b_U (so checkpoints are written as they always were)."""
    bias = state.pop(prefix + "unembed.b_U")
    W_E = state[prefix + "embed.W_E"]
    state[prefix + "unembed.W_U"] = W_E.T.clone(memory_format=torch.contiguous_format)
    state[prefix + "unembed.b_U"] = bias


def _drop_tied_unembedding(model: Transformer, state: dict, prefix: str, metadata, strict,
                           missing, unexpected, errors: list) -> None:
    """Load-state-dict hook of a tied model: an unembed.W_U (as saved) must be W_E transposed."""
    W_U, W_E = state.pop(prefix + "unembed.W_U", None), state.get(prefix + "embed.W_E")
    if W_U is not None and W_E is not None and not torch.equal(W_U, W_E.T):
        errors.append(f"{prefix}unembed.W_U is not {prefix}embed.W_E transposed, and the "
                      "model ties them")
