"""A rasp-ir model directory as Hugging Face sees it (copied into the directory as
`modeling_rasp_ir.py`; rasp-ir itself never imports this module).

`compiler/checkpoint.py:save_model` writes this file beside `config.json`, whose `auto_map`
points here, so that

    AutoModelForCausalLM.from_pretrained(DIR, trust_remote_code=True, dtype="auto")

builds the model rasp-ir runs, with the same weights (TransformerLens names, loaded as they
are) and the same logits. The file needs only torch and transformers, not rasp-ir: a directory
can be shared on its own. The forward pass is that of compiler/transformer.py (LayerNorm on or
off, causal or bidirectional attention, any attention scale, a separate output vocabulary);
tests/test_hf.py holds the two to the same logits.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutput

ACTIVATIONS = {"gelu_new": lambda x: F.gelu(x, approximate="tanh"), "gelu": F.gelu,
               "relu": F.relu}


class RaspIrConfig(PretrainedConfig):
    """The fields of rasp-ir's TransformerConfig (config.json of a rasp-ir directory)."""

    model_type = "rasp-ir"

    def __init__(self, vocab_size=1, n_positions=1, d_model=1, n_layers=0, n_heads=1,
                 d_head=None, d_mlp=None, d_vocab_out=None, layer_norm=True, ln_eps=1e-5,
                 activation="gelu_new", causal=True, attn_scale=None, **kwargs):
        self.vocab_size, self.n_positions, self.d_model = vocab_size, n_positions, d_model
        self.n_layers, self.n_heads = n_layers, n_heads
        self.d_head = d_head or d_model // n_heads
        self.d_mlp = d_mlp or 4 * d_model
        self.d_vocab_out = d_vocab_out or vocab_size
        self.layer_norm, self.ln_eps, self.activation = layer_norm, ln_eps, activation
        self.causal, self.attn_scale = causal, attn_scale
        super().__init__(**kwargs)


def _param(*shape):
    return nn.Parameter(torch.empty(*shape))


class LayerNorm(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.w, self.b, self.eps = _param(c.d_model), _param(c.d_model), c.ln_eps

    def forward(self, x):
        return F.layer_norm(x, x.shape[-1:], self.w, self.b, self.eps)


class Attention(nn.Module):
    def __init__(self, c):
        super().__init__()
        H, D, E = c.n_heads, c.d_model, c.d_head
        self.W_Q, self.W_K, self.W_V = _param(H, D, E), _param(H, D, E), _param(H, D, E)
        self.b_Q, self.b_K, self.b_V = _param(H, E), _param(H, E), _param(H, E)
        self.W_O, self.b_O = _param(H, E, D), _param(D)
        self.scale = 1 / math.sqrt(E) if c.attn_scale is None else c.attn_scale

    def forward(self, x, allowed):
        q = torch.einsum("btd,hde->bhte", x, self.W_Q) + self.b_Q[:, None]  # (B, H, T, E)
        k = torch.einsum("btd,hde->bhte", x, self.W_K) + self.b_K[:, None]
        v = torch.einsum("btd,hde->bhte", x, self.W_V) + self.b_V[:, None]
        scores = (q @ k.transpose(-1, -2)) * self.scale                     # (B, H, T, T)
        scores = scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)
        z = scores.softmax(dim=-1) @ v                                      # (B, H, T, E)
        return torch.einsum("bhte,hed->btd", z, self.W_O) + self.b_O       # (B, T, D)


class MLP(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.W_in, self.b_in = _param(c.d_model, c.d_mlp), _param(c.d_mlp)
        self.W_out, self.b_out = _param(c.d_mlp, c.d_model), _param(c.d_model)
        self.act = ACTIVATIONS[c.activation]

    def forward(self, x):
        return self.act(x @ self.W_in + self.b_in) @ self.W_out + self.b_out


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.ln1 = LayerNorm(c) if c.layer_norm else None
        self.attn = Attention(c)
        self.ln2 = LayerNorm(c) if c.layer_norm else None
        self.mlp = MLP(c)

    def forward(self, x, allowed):
        x = x + self.attn(self.ln1(x) if self.ln1 else x, allowed)
        return x + self.mlp(self.ln2(x) if self.ln2 else x)


class RaspIrForCausalLM(PreTrainedModel):
    """rasp-ir's transformer: logits [batch, seq, d_vocab_out] for input_ids [batch, seq]."""

    config_class = RaspIrConfig
    base_model_prefix = "rasp_ir"

    def __init__(self, config: RaspIrConfig):
        super().__init__(config)
        c = config
        self.embed, self.pos_embed, self.unembed = nn.Module(), nn.Module(), nn.Module()
        self.embed.W_E = _param(c.vocab_size, c.d_model)
        self.pos_embed.W_pos = _param(c.n_positions, c.d_model)
        self.blocks = nn.ModuleList(Block(c) for _ in range(c.n_layers))
        self.ln_final = LayerNorm(c) if c.layer_norm else None
        self.unembed.W_U = _param(c.d_model, c.d_vocab_out)
        self.unembed.b_U = _param(c.d_vocab_out)
        self.post_init()

    def _init_weights(self, module):
        # GPT-2's initialisation, for a weight the directory lacks (loading warns about it)
        for name, p in module.named_parameters(recurse=False):
            if name == "w":
                nn.init.ones_(p)
            elif name.startswith("b"):
                nn.init.zeros_(p)
            else:
                nn.init.normal_(p, 0.0, 0.02)

    def forward(self, input_ids, attention_mask=None, position_ids=None, labels=None,
                **kwargs):
        B, T = input_ids.shape
        if position_ids is None:
            pos = self.pos_embed.W_pos[:T].expand(B, T, -1)
        else:
            pos = F.embedding(position_ids, self.pos_embed.W_pos).expand(B, T, -1)
        x = F.embedding(input_ids, self.embed.W_E) + pos                   # (B, T, D)
        allowed = torch.ones(T, T, dtype=torch.bool, device=input_ids.device)
        if self.config.causal:
            allowed = allowed.tril()
        allowed = allowed[None, None]                                       # (1, 1, T, T)
        if attention_mask is not None:
            allowed = allowed & attention_mask.bool()[:, None, None, :]
        for block in self.blocks:
            x = block(x, allowed)
        if self.ln_final is not None:
            x = self.ln_final(x)
        logits = x @ self.unembed.W_U + self.unembed.b_U                    # (B, T, V)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten())
        return CausalLMOutput(loss=loss, logits=logits)
