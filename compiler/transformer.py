"""The one transformer of the project: a GPT-2-style decoder with TransformerLens parameter names.

It runs trained Hugging Face GPT-2 checkpoints (pre-LayerNorm, gelu_new, causal) and compiled
RASP programs (LayerNorm off, relu, possibly bidirectional, a chosen attention scale). Weights
use the `x @ W` convention of TransformerLens and of GPT-2's Conv1D, with heads split out:
W_Q is [n_heads, d_model, d_head], W_O is [n_heads, d_head, d_model]. Shapes in comments use
B batch, T sequence, H heads, D d_model, E d_head, M d_mlp, V vocabulary.
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

    def to_dict(self) -> dict:
        """The fields as a JSON-ready dict (every field explicit, defaults resolved)."""
        return asdict(self)


def _param(*shape: int) -> nn.Parameter:
    return nn.Parameter(torch.empty(*shape))


def _save(cache: dict | None, name: str, value: torch.Tensor) -> None:
    if cache is not None:
        cache[name] = value


class LayerNorm(nn.Module):
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.eps = cfg.ln_eps
        self.w, self.b = _param(cfg.d_model), _param(cfg.d_model)
        # The linear-LayerNorm assumption (extractor/decompile/linearise.py) replaces the per-position
        # scale sqrt(var + eps) by this constant; None is the real LayerNorm. Not a weight.
        self.fixed_scale: float | None = None

    def forward(self, x, cache=None, name=""):
        if cache is not None:
            # The per-position scale is what a linearised LayerNorm treats as a constant.
            cache[name + "hook_scale"] = (x.var(-1, unbiased=False, keepdim=True) + self.eps).sqrt()
        if self.fixed_scale is not None:
            return (x - x.mean(-1, keepdim=True)) / self.fixed_scale * self.w + self.b
        return F.layer_norm(x, x.shape[-1:], self.w, self.b, self.eps)


class Attention(nn.Module):
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        H, D, E = cfg.n_heads, cfg.d_model, cfg.d_head
        self.W_Q, self.W_K, self.W_V = _param(H, D, E), _param(H, D, E), _param(H, D, E)
        self.b_Q, self.b_K, self.b_V = _param(H, E), _param(H, E), _param(H, E)
        self.W_O, self.b_O = _param(H, E, D), _param(D)
        self.scale = cfg.scale
        # GPT-2's attn_pdrop, for training only (extractor/training/train.py sets it); 0 leaves the
        # forward pass untouched, and it is not part of the config or the weights.
        self.dropout = 0.0

    def forward(self, x, allowed, cache=None, name=""):
        # x: (B, T, D); allowed: (B or 1, 1, T, T) bool, True where a query may read a key
        q = torch.einsum("btd,hde->bhte", x, self.W_Q) + self.b_Q[:, None]  # (B, H, T, E)
        k = torch.einsum("btd,hde->bhte", x, self.W_K) + self.b_K[:, None]  # (B, H, T, E)
        v = torch.einsum("btd,hde->bhte", x, self.W_V) + self.b_V[:, None]  # (B, H, T, E)
        scores = (q @ k.transpose(-1, -2)) * self.scale                     # (B, H, T, T)
        # finfo.min rather than -inf, as GPT-2 does: a row with no allowed key stays finite.
        scores = scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)
        pattern = scores.softmax(dim=-1)                                    # (B, H, T, T)
        if self.dropout and self.training:
            pattern = F.dropout(pattern, self.dropout)
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
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.ln1 = LayerNorm(cfg) if cfg.layer_norm else None
        self.attn = Attention(cfg)
        self.ln2 = LayerNorm(cfg) if cfg.layer_norm else None
        self.mlp = MLP(cfg)

    def forward(self, x, allowed, cache=None, name=""):
        _save(cache, name + "hook_resid_pre", x)
        h = self.ln1(x, cache, name + "ln1.") if self.ln1 is not None else x
        attn_out = self.attn(h, allowed, cache, name + "attn.")
        x = x + attn_out
        _save(cache, name + "hook_attn_out", attn_out)
        _save(cache, name + "hook_resid_mid", x)
        h = self.ln2(x, cache, name + "ln2.") if self.ln2 is not None else x
        mlp_out = self.mlp(h, cache, name + "mlp.")
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
        self.blocks = nn.ModuleList(Block(c) for _ in range(c.n_layers))
        self.ln_final = LayerNorm(c) if c.layer_norm else None
        self.unembed = nn.Module()
        self.unembed.W_U, self.unembed.b_U = _param(c.d_model, c.d_vocab_out), _param(c.d_vocab_out)
        self.reset_parameters()

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
                return_cache: bool = False, position_ids: torch.Tensor | None = None):
        """Logits [batch, seq, d_vocab_out] for tokens [batch, seq].

        attention_mask [batch, seq] (1 = real token, 0 = padding) hides padded keys.
        position_ids [batch, seq] (or [seq]) picks the rows of W_pos; the default is 0..seq-1.
        Trained checkpoints of the D-RASP paper saw random position offsets in training, so
        training passes offset positions here. With return_cache=True, returns (logits, cache) where cache maps
        TransformerLens hook names to activations: hook_embed, hook_pos_embed, and per block
        `blocks.L.` hook_resid_pre, attn.hook_pattern [B, H, T, T], attn.hook_z, hook_attn_out,
        hook_resid_mid, mlp.hook_pre/hook_post, hook_mlp_out, hook_resid_post; with LayerNorm
        also ln1/ln2/ln_final.hook_scale [B, T, 1].
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
        x = embed + pos
        allowed = torch.ones(T, T, dtype=torch.bool, device=tokens.device)
        if c.causal:
            allowed = allowed.tril()
        allowed = allowed[None, None]                                       # (1, 1, T, T)
        if attention_mask is not None:
            allowed = allowed & attention_mask.bool()[:, None, None, :]     # (B, 1, T, T)
        for i, block in enumerate(self.blocks):
            x = block(x, allowed, cache, f"blocks.{i}.")
        if self.ln_final is not None:
            x = self.ln_final(x, cache, "ln_final.")
        logits = x @ self.unembed.W_U + self.unembed.b_U                    # (B, T, V)
        return (logits, cache) if return_cache else logits
