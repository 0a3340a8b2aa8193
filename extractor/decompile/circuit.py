"""The model as a circuit of paths with masked edges: what causal pruning trains.

Under LLN-A (extractor/decompile/linearise.py) every reader of the residual stream is linear, so the
stream is a sum of *paths* (docs/extractor.md): `token`, `pos`, one path per (head, value
path it reads) and one per MLP. A reader (a head's query, key or value, an MLP, the
unembedding) sees each earlier path through an *edge*. An edge with mask m contributes
m·x_p + (1 − m)·ō_p: a pruned edge reads the path's optimal-ablation constant ō_p instead
(learned). The query-key products of a head are edges too (stage 3): a pruned product contributes
nothing, and a key path's query-independent term is scored against the head's constant query.

`Circuit.forward` runs all of this vectorised: the paths of a layer are one stacked tensor, every
head's query-key products are one einsum, and masks carry a leading sample axis so each
sequence of a batch can draw its own masks. With every mask 1 and ō = 0 it is the linearised
model exactly (tests/test_prune.py). `Masks` holds the masks at the finest granularity; the
pruning stages (extractor/decompile/prune.py) tie them into groups.

Every constant a reader sees (biases, LayerNorm β, ablated edges, the learned offsets) is kept
apart from the paths, so `extractor/decompile/circuit_program.py` can print the same numbers as tables.
"""

from __future__ import annotations

import math

import torch
from attrs import frozen
from torch import nn
from torch.nn import functional as F

from extractor.decompile.linearise import layer_norms

READER_KINDS = ("q", "k", "v")


@frozen
class Path:
    """An activation variable of the program."""
    name: str               # its program name: token, pos, a<L>_<h>_<source>, m<L>
    node: str               # the component that writes it (stage 1): token, pos, h<L>.<h>, m<L>
    layer: int              # -1 for token and pos
    head: int | None = None
    source: int | None = None   # index of the path a head reads as its value


class Graph:
    """Every path of a model and which of them each reader can see."""

    def __init__(self, n_layers: int, n_heads: int):
        self.n_layers, self.n_heads = n_layers, n_heads
        paths = [Path("token", "token", -1), Path("pos", "pos", -1)]
        self.before_heads, self.before_mlp = [], []
        for L in range(n_layers):
            available = len(paths)
            self.before_heads.append(available)
            for h in range(n_heads):
                for p in range(available):
                    paths.append(Path(f"a{L}_{h}_{paths[p].name}", f"h{L}.{h}", L, h, p))
            self.before_mlp.append(len(paths))
            paths.append(Path(f"m{L}", f"m{L}", L))
        self.paths = paths

    def __len__(self) -> int:
        return len(self.paths)

    def head_path(self, L: int, h: int, p: int) -> int:
        """The index of the path head (L, h) writes when it reads path p as its value."""
        return self.before_heads[L] + h * self.before_heads[L] + p

    def mlp_path(self, L: int) -> int:
        return self.before_mlp[L]

    def nodes(self) -> list[str]:
        seen = []
        for p in self.paths:
            if p.node not in seen:
                seen.append(p.node)
        return seen


@frozen(eq=False)
class Masks:
    """Edge masks with a leading sample axis B (1 broadcasts over the batch). P: paths.

    q, k, v: (B, L, H, P): path p → head (L, h)'s query, key, value (0 where p comes later).
    mlp: (B, L, P); out: (B, P).
    qk: (B, L, H, P, P) products of query path p and key path r; kb: (B, L, H, P) key-only terms.
    Without qk and kb (stages 1 and 2) a product is kept when both its paths are: qk = q ⊗ k
    and kb = k.
    """
    q: torch.Tensor
    k: torch.Tensor
    v: torch.Tensor
    mlp: torch.Tensor
    out: torch.Tensor
    qk: torch.Tensor | None = None
    kb: torch.Tensor | None = None

    def products(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.qk is not None:
            return self.qk, self.kb
        return self.q[..., :, None] * self.k[..., None, :], self.k

    def to(self, device) -> "Masks":
        """The same masks on `device`."""
        return Masks(*(None if m is None else m.to(device) for m in
                       (self.q, self.k, self.v, self.mlp, self.out, self.qk, self.kb)))


def full_masks(graph: Graph, dtype=torch.float32) -> Masks:
    """Every available edge kept."""
    L, H, P = graph.n_layers, graph.n_heads, len(graph)
    heads = torch.zeros(1, L, H, P, dtype=dtype)
    mlp = torch.zeros(1, L, P, dtype=dtype)
    for layer in range(L):
        heads[:, layer, :, :graph.before_heads[layer]] = 1
        mlp[:, layer, :graph.before_mlp[layer]] = 1
    return Masks(heads.clone(), heads.clone(), heads.clone(), mlp, torch.ones(1, P, dtype=dtype))


def rows(x: torch.Tensor, start: int | torch.Tensor, dim: int = 1) -> torch.Tensor:
    """x's positions (along `dim`) from `start` on, or those the index tensor `start` lists."""
    if isinstance(start, torch.Tensor):
        return x.index_select(dim, start)
    return x.narrow(dim, start, x.shape[dim] - start)


class Norm(nn.Module):
    """A reader's LayerNorm under LLN-A: x ↦ centre(x) · γ / s (+ β), s = exp(log_scale)
    learned; the identity for models without LayerNorm (compiled ones)."""

    def __init__(self, norm, count: int, d: int):
        super().__init__()
        self.linear = norm is not None
        self.register_buffer("gamma", norm.w.detach().float().clone() if norm is not None
                             else torch.ones(d))
        self.register_buffer("beta", norm.b.detach().float().clone() if norm is not None
                             else torch.zeros(d))
        scale = norm.fixed_scale if norm is not None and norm.fixed_scale is not None else 1.0
        # one learned scale per reader that shares this LayerNorm (per head for ln1)
        self.log_scale = nn.Parameter(torch.full((count,), math.log(float(scale))),
                                      requires_grad=self.linear)

    def centre(self, x: torch.Tensor) -> torch.Tensor:
        return x - x.mean(-1, keepdim=True) if self.linear else x


class Circuit(nn.Module):
    """The path-expanded linearised model with masks (see the module docstring)."""

    def __init__(self, model):
        super().__init__()
        if not layer_norms(model) and model.config.layer_norm:
            raise ValueError("a model with LayerNorm must be linearised first")
        c = self.config = model.config
        self.graph = Graph(c.n_layers, c.n_heads)
        f = lambda t: t.detach().float().clone()   # noqa: E731
        self.register_buffer("W_E", f(model.embed.W_E))
        self.register_buffer("W_pos", f(model.pos_embed.W_pos))
        for name in ("W_Q", "W_K", "W_V", "W_O", "b_Q", "b_V", "b_O"):
            self.register_buffer(name, torch.stack([f(getattr(b.attn, name))
                                                    for b in model.blocks]))
        for name in ("W_in", "b_in", "W_out", "b_out"):
            self.register_buffer(name, torch.stack([f(getattr(b.mlp, name))
                                                    for b in model.blocks]))
        self.register_buffer("W_U", f(model.unembed.W_U))
        self.register_buffer("b_U", f(model.unembed.b_U))
        H, D = c.n_heads, c.d_model
        # reader scales: ln1 per head and kind (q, k, v), ln2 per MLP, ln_final once
        self.ln_q = nn.ModuleList(Norm(b.ln1, H, D) for b in model.blocks)
        self.ln_k = nn.ModuleList(Norm(b.ln1, H, D) for b in model.blocks)
        self.ln_v = nn.ModuleList(Norm(b.ln1, H, D) for b in model.blocks)
        self.ln_mlp = nn.ModuleList(Norm(b.ln2, 1, D) for b in model.blocks)
        self.ln_out = Norm(model.ln_final, 1, D)
        P, D = len(self.graph), c.d_model
        self.ablation = nn.Parameter(torch.zeros(P, D))                 # ō per path
        self.q_offset = nn.Parameter(torch.zeros(c.n_layers, H, c.d_head))
        self.mlp_offset = nn.Parameter(torch.zeros(c.n_layers, c.d_mlp))
        self.out_offset = nn.Parameter(torch.zeros(c.d_vocab_out))
        self.act = model.blocks[0].mlp.act if c.n_layers else None
        self.scale = c.scale

    def forward(self, tokens: torch.Tensor, positions: torch.Tensor, masks: Masks,
                start: int | torch.Tensor = 0) -> torch.Tensor:
        """Logits (B, T − start, V) at positions start, start + 1, …, or (B, S, V) at the S
        positions of a 1-d index tensor `start`; a pruned edge (mask m) reads (1 − m)·ō. The
        last layer runs its queries and MLP only at those positions: pruning scores only the
        answer positions, and on most tasks those come late (after a sort's separator, at a
        classifier's last token), so that part costs a fraction."""
        X, C = self.paths(tokens, positions, masks, start)
        return self._unembed(X, C, masks, masks)

    def paths(self, tokens: torch.Tensor, positions: torch.Tensor,
              masks: Masks, start: int | torch.Tensor = 0) -> tuple[list, torch.Tensor]:
        """Every path's activation (B, T − start, D) from position `start` on (or at the
        positions `start` lists, see `rows`), in graph order, and the stream's constant
        (earlier layers see every position: later ones read them)."""
        c, g = self.config, self.graph
        B, T = tokens.shape
        am = masks
        X = [self.W_E[tokens], self.W_pos[positions]]                  # paths: (B, T, D) each
        C = torch.zeros(1, c.d_model, dtype=self.W_E.dtype,            # constant of the stream
                        device=self.W_E.device)
        qk, kb = masks.products()
        causal = torch.ones(T, T, dtype=torch.bool, device=tokens.device).tril() \
            if c.causal else None
        for L in range(c.n_layers):
            n = g.before_heads[L]
            ab = self.ablation[:n]                                     # (n, D)
            q_norm, k_norm, v_norm = self.ln_q[L], self.ln_k[L], self.ln_v[L]
            first = start if L == c.n_layers - 1 else 0                # the queries' start
            Q = self._read(X[:n], tokens, positions, q_norm, self.W_Q[L], first)
            K = self._read(X[:n], tokens, positions, k_norm, self.W_K[L])
            V = self._read(X[:n], tokens, positions, v_norm, self.W_V[L])
            # the query every key-only term is scored against: biases, the stream's constant,
            # the ablated query edges and a learned offset
            q_const = (self._read_const(C, q_norm, self.W_Q[L]) + self.b_Q[L]
                       + torch.einsum("bhp,phe->bhe", 1 - am.q[:, L, :, :n],
                                      self._read_const(ab, q_norm, self.W_Q[L], beta=False))
                       + self.q_offset[L])                             # (B, H, E)
            M = qk[:, L, :, :n, :n]                                    # (B, H, n, n)
            Qm = torch.einsum("bhpr,pbhie->bhrie", M.expand(B, -1, -1, -1), Q)
            scores = torch.einsum("bhrie,rbhje->bhij", Qm, K)
            key_only = torch.einsum("bhe,rbhje,bhr->bhj", q_const.expand(B, -1, -1), K,
                                    kb[:, L, :, :n].expand(B, -1, -1))
            scores = (scores + key_only[:, :, None, :]) * self.scale
            if causal is not None:
                scores = scores.masked_fill(~rows(causal, first, 0),
                                            torch.finfo(scores.dtype).min)
            pattern = scores.softmax(-1)                               # (B, H, T, T)
            Z = torch.einsum("bhij,pbhje->pbhie", pattern, V)
            heads = torch.einsum("pbhie,hed->hpbid", Z, self.W_O[L])  # (H, n, B, T, D)
            mv = masks.v[:, L, :, :n]                                  # (B, H, n)
            heads = heads * mv.permute(1, 2, 0)[..., None, None]
            if isinstance(first, torch.Tensor) or first:
                X = [rows(x, first) for x in X]
            X.extend(heads.reshape(c.n_heads * n, B, -1, c.d_model).unbind(0))
            # what the heads add whatever the input: the value of the constant stream (each
            # attention row sums to 1), the ablated value edges, b_O
            v_const = self._read_const(C, v_norm, self.W_V[L]) + self.b_V[L]     # (1|B, H, E)
            v_ablated = torch.einsum("bhp,phe->bhe", 1 - am.v[:, L, :, :n],
                                     self._read_const(ab, v_norm, self.W_V[L], beta=False))
            C = C + torch.einsum("bhe,hed->bd", v_const + v_ablated, self.W_O[L]) + self.b_O[L]
            X.append(self._mlp(L, X, C, masks, am))
        return X, C

    @staticmethod
    def _fold(norm: Norm, W: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """W (…, D, E) with the LayerNorm's centring, γ and 1/s folded in: centre(x)·γ/s·W =
        x·W' (the big path tensors then see one matmul, no elementwise pass)."""
        W = norm.gamma[:, None] * W
        if norm.linear:
            W = W - W.mean(-2, keepdim=True)
        return W / scale

    def _read(self, X: list, tokens, positions, norm: Norm, W,
              first: int | torch.Tensor = 0) -> torch.Tensor:
        """Paths X (n of (B, T, D), token and pos first) from position `first` on, through a
        LayerNorm (no β) and W (H, D, E): (n, B, H, T − first, E). The token and pos paths
        are rows of W_E and W_pos, so they are read as a table per token and per position
        (a few hundred rows through W, not every position of every sequence: on one-layer
        models most of a pruning step's work)."""
        folded = self._fold(norm, W, norm.log_scale.exp()[:, None, None])   # (H, D, E)
        H, _, E = folded.shape

        def table(embedding, ids):                                     # (B, H, T', E)
            read = torch.einsum("vd,hde->vhe", embedding, folded).reshape(len(embedding),
                                                                          H * E)
            return F.embedding(rows(ids, first), read).unflatten(-1, (H, E)).transpose(1, 2)

        out = [table(self.W_E, tokens), table(self.W_pos, positions)]
        if len(X) > 2:
            stack = torch.stack([rows(x, first) for x in X[2:]])      # (n − 2, B, T', D)
            out.extend(torch.einsum("pbtd,hde->pbhte", stack, folded).unbind(0))
        return torch.stack(out)

    def _read_const(self, const, norm: Norm, W, beta: bool = True) -> torch.Tensor:
        """Constant vectors (N, D) through a LayerNorm (with β) and W (H, D, E): (N, H, E)."""
        folded = self._fold(norm, W, norm.log_scale.exp()[:, None, None])
        out = torch.einsum("nd,hde->nhe", const, folded)
        if beta:
            out = out + torch.einsum("d,hde->he", norm.beta, W)
        return out

    def _mix(self, X, C, m, am, norm: Norm, W) -> torch.Tensor:
        """A reader's input from all paths, Σ m·x + (1 − m)·ō + C, through its LayerNorm and
        then W (D, M): (B, T, M)."""
        n = len(X)
        folded = self._fold(norm, W, norm.log_scale.exp()[0])
        stack = torch.stack(X)                                         # (n, B, T, D)
        x = torch.einsum("bp,pbtd->btd", m[:, :n].expand(stack.shape[1], -1), stack) @ folded
        const = (C + (1 - am[:, :n]) @ self.ablation[:n]) @ folded + norm.beta @ W
        return x + const[:, None, :]

    def _mlp(self, L, X, C, masks, am) -> torch.Tensor:
        x = self._mix(X, C, masks.mlp[:, L], am.mlp[:, L], self.ln_mlp[L], self.W_in[L])
        hidden = self.act(x + self.b_in[L] + self.mlp_offset[L])
        return hidden @ self.W_out[L] + self.b_out[L]

    def _unembed(self, X, C, masks, am) -> torch.Tensor:
        x = self._mix(X, C, masks.out, am.out, self.ln_out, self.W_U)
        return x + self.b_U + self.out_offset
