"""A transformer rewritten exactly as a D-RASP program in the IR: one variable per path.

Under LLN-A every reader of the residual stream (a head's query, key and value, an MLP, the
unembedding) is linear in it, and the residual stream is a sum of writes by *sources*, each the
product D · E of an input-dependent activation D (one row per position, over a finite basis)
and a fixed matrix E (basis × d_model) (docs/extractor.md, The path program):

- `token` and `pos`: one-hot rows over the vocabulary and the positions; E = W_E, W_pos.
- `aL_H_<src>`: head H of layer L reading value path <src>: the softmax-weighted average of
  <src>'s rows (a vec over <src>'s basis); E = E_src · W_ln · W_V · W_O. Rows of an attention
  pattern sum to 1, so the value bias and the constant part of the input become a constant.
- `mL`: the MLP of layer L, an opaque node over every earlier source (its input weights folded
  through each source's E), writing its d_model outputs; E = I.
- one constant vector: every bias (b_O, b_V through W_O, b_out is inside the MLP node, LayerNorm
  betas) that reaches the stream regardless of the input.

A head's attention score is q_i · k_j · scale with q_i = Σ_p D_p[i] E_p W_ln W_Q + c_q and
k_j = Σ_r D_r[j] E_r W_ln W_K + c_k. Expanded: one bilinear table per (query source, key
source) pair, M_pr = scale · (E_p W_ln W_Q)(E_r W_ln W_K)ᵀ, plus one query-independent vector
per key source, scale · c_q (E_r W_ln W_K)ᵀ. Terms constant in the key (everything with c_k)
cancel in the softmax and are dropped, exactly. The logits are one projection table per
source, E_s W_ln W_U, plus a bias. No constant is re-learned: the program computes the same
numbers as the linearised model, which tests/test_paths.py checks to 1e-4.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from attrs import define, frozen

from rasp_ir import nodes as ir
from rasp_ir.diagnostics import Diagnostic, RaspError
from rasp_ir.interpreter import mlp_activation

MAX_ENTRIES = 20_000_000   # table entries a full program may hold (~0.6 GB as IR tuples)


@frozen
class Size:
    """How big the full program of a model is, counted before anything is built."""
    paths: int          # activation variables: token, pos, one per (head, value path), MLPs
    score_terms: int    # bilinear and query-independent score tables
    entries: int        # numbers in all tables (scores, MLP weights, projections)
    layers: list        # per layer: (sources read, score terms, entries)


def size(model, n_tokens: int, n_positions: int, n_outputs: int) -> Size:
    """The full program's size for `model`, from its shapes alone."""
    c = model.config
    dims = [n_tokens, n_positions]
    terms = entries = 0
    layers = []
    for _ in range(c.n_layers):
        read, width = len(dims), sum(dims)
        layer_terms = c.n_heads * (read * read + read)
        dims = dims + dims * c.n_heads          # the heads' outputs, which the MLP reads too
        mlp_in = sum(dims)
        layer_entries = c.n_heads * (width * width + width) + mlp_in * c.d_mlp + c.d_mlp \
            + c.d_mlp * c.d_model + c.d_model
        layers.append((read, layer_terms, layer_entries))
        terms += layer_terms
        entries += layer_entries
        dims = dims + [c.d_model]
    entries += sum(dims) * n_outputs + n_outputs
    return Size(len(dims), terms, entries, layers)


@define
class Source:
    """A variable of the program and its write to the residual stream."""
    name: str
    basis: tuple
    E: np.ndarray           # (len(basis), d_model)
    node: ir.Node | None = None     # how the program refers to it (default: its name)

    @property
    def ref(self) -> ir.Node:
        return self.node if self.node is not None else ir.Ref(self.name)


@frozen
class Reader:
    """A linear reader of the residual stream: x ↦ x @ W + beta (LayerNorm under LLN-A)."""
    W: np.ndarray           # (d_model, d_model)
    beta: np.ndarray        # (d_model,)

    def of_source(self, s: Source) -> np.ndarray:
        return s.E @ self.W

    def of_constant(self, c: np.ndarray) -> np.ndarray:
        return c @ self.W + self.beta


def reader(norm, d_model: int) -> Reader:
    """The linear map of a LayerNorm with a fixed scale, or the identity without one."""
    if norm is None:
        return Reader(np.eye(d_model), np.zeros(d_model))
    if norm.fixed_scale is None:
        raise ValueError("linearise the model first (LayerNorm without a fixed scale)")
    w = norm.w.detach().double().numpy()
    centre = np.eye(d_model) - np.full((d_model, d_model), 1.0 / d_model)
    return Reader(centre * (w / norm.fixed_scale)[None, :], norm.b.detach().double().numpy())


def _array(t) -> np.ndarray:
    return t.detach().double().cpu().numpy()


def named_matrix(name: str, rows, cols, values: np.ndarray) -> ir.Matrix:
    """A table of the program, `name`d as its weights are (rows × cols, or a vector over the
    rows where cols is None), holding `values` as plain floats.

    The same numbers under the same name give the same Matrix object as the last call.
    Extraction rebuilds its program from the circuit for every candidate it judges
    (hundreds), and the interpreter's memo compares each binding's tables with those of the
    programs before: equal tables built apart compare float by float (on
    bin_majority_interleave 62 % of the replacement step), one object compares at once. One
    table per name is kept, the last: a circuit's tables change one at a time."""
    values = np.ascontiguousarray(values, dtype=np.float64)
    rows, cols = tuple(rows), None if cols is None else tuple(cols)
    key = (rows, cols, values.shape, values.tobytes())
    last = _LAST_MADE.get(name)
    if last is not None and last[0] == key:
        return last[1]
    if cols is None:
        matrix = ir.Matrix(rows, None, tuple(values.tolist()), name=name)
    else:
        matrix = ir.Matrix(rows, cols, tuple(map(tuple, values.tolist())), name=name)
    if len(_LAST_MADE) >= 4096:             # names of many circuits: start again
        _LAST_MADE.clear()
    _LAST_MADE[name] = (key, matrix)
    return matrix


_LAST_MADE: dict[str, tuple] = {}          # name -> (what it was made of, the Matrix)


def full_program(model, tokens: tuple, outputs: tuple, prediction: str | None,
                 n_positions: int | None = None, limit: int = MAX_ENTRIES,
                 progress: Callable[[str], None] | None = None,
                 bos: str | None = None) -> ir.Program:
    """The full D-RASP program of a (linearised or LayerNorm-free) Transformer.

    tokens: the name of each token id; outputs: the label of each logit; prediction:
    "softmax", "sigmoid" or None (the output is then the logits); n_positions: the positions
    the program covers (default: all the model has). Parts that are exactly zero (a head that
    writes nothing, a path a head's W_Q cannot see: common in compiled models) are left out,
    which changes no number. X501 as soon as the tables would hold more than `limit` numbers.
    `progress(text)` is called before each head. bos: the token every input starts with
    (the program's @bos), if any.
    """
    c = model.config
    if c.activation not in ACTIVATIONS:
        raise ValueError(f"MLP activation {c.activation!r} has no IR counterpart "
                         f"(supported: {', '.join(ACTIVATIONS)})")
    P = n_positions or c.n_positions
    builder = _Builder(model, tokens, outputs, P, limit, progress)
    builder.run()
    bindings = builder.bindings
    output = ir.Ref("logits")
    if prediction is not None:
        bindings.append(ir.Binding("prediction", ir.Predict(prediction, ir.Ref("logits"))))
        output = ir.Ref("prediction")
    return ir.Program(bindings=tuple(bindings), output=output, vocab=tuple(tokens), maxlen=P,
                      causal=c.causal, bos=bos)


class _Builder:
    """One walk over the model's layers, making the bindings. Each table is counted before it
    becomes IR, so the walk stops (X501) as soon as the limit is passed: memory never holds
    much more than `limit` numbers, and what was built is dropped with the error."""

    def __init__(self, model, tokens, outputs, P, limit, progress=None):
        self.model, self.outputs, self.limit = model, tuple(outputs), limit
        self.progress = progress
        self.D = model.config.d_model
        # `token` and `pos` are the language's own names for tokens and indices
        self.sources = [Source("token", tuple(tokens), _array(model.embed.W_E), ir.Tokens()),
                        Source("pos", tuple(range(P)), _array(model.pos_embed.W_pos)[:P],
                               ir.Indices())]
        self.bindings: list[ir.Binding] = []
        self.constant = np.zeros(self.D)
        self.entries = 0

    def count(self, n: int) -> None:
        self.entries += n
        if self.entries > self.limit:
            c = self.model.config
            s = size(self.model, len(self.sources[0].basis), len(self.sources[1].basis),
                     len(self.outputs))
            raise RaspError([Diagnostic(
                "X501", f"the full program of this {c.n_layers}-layer, {c.n_heads}-head model "
                f"needs more than {self.limit:,} table entries (the limit); counted from its "
                f"shapes it has {s.paths:,} paths and {s.score_terms:,} score terms holding "
                f"{s.entries:,} numbers",
                note="paths multiply with depth: every head of layer L reads every path of "
                "the layers below it, and every score term pairs two of them",
                hint="raise the limit with --max-entries if the memory is there (about 32 "
                "bytes a number)")])

    def run(self) -> int:
        for L, block in enumerate(self.model.blocks):
            self.attention(L, block)
            self.mlp(L, block)
        self.unembedding()
        return self.entries

    def attention(self, L: int, block) -> None:
        attn, sources = block.attn, self.sources
        ln = reader(block.ln1, self.D)
        read = [ln.of_source(s) for s in sources]
        c_in = ln.of_constant(self.constant)
        W_Q, W_K, W_V, W_O = (_array(w) for w in (attn.W_Q, attn.W_K, attn.W_V, attn.W_O))
        b_Q, b_V = _array(attn.b_Q), _array(attn.b_V)
        new = []
        for h in range(W_Q.shape[0]):
            self.constant = self.constant + (c_in @ W_V[h] + b_V[h]) @ W_O[h]
            ov = W_V[h] @ W_O[h]                                           # (D, D)
            values = [(s, x @ ov) for s, x in zip(sources, read)]
            values = [(s, E) for s, E in values if E.any()]
            if not values:
                continue                    # the head writes only a constant
            if self.progress:
                self.progress(f"layer {L} head {h}")
            queries = [(p, x @ W_Q[h]) for p, x in zip(sources, read)]      # (|p|, E) each
            keys = [(r, x @ W_K[h]) for r, x in zip(sources, read)]
            queries = [(p, q) for p, q in queries if q.any()]
            keys = [(r, k) for r, k in keys if k.any()]
            q_const = c_in @ W_Q[h] + b_Q[h]                               # (E,)
            terms = []
            for p, q in queries:
                for r, k in keys:
                    table = attn.scale * q @ k.T
                    if table.any():
                        self.count(table.size)
                        terms.append(ir.Select(r.ref, p.ref, named_matrix(
                            f"qk{L}_{h}.{p.name}.{r.name}", p.basis, r.basis, table)))
            for r, k in keys:
                vector = attn.scale * k @ q_const
                if vector.any():
                    self.count(vector.size)
                    terms.append(ir.Select(r.ref, None, named_matrix(
                        f"k{L}_{h}.{r.name}", r.basis, None, vector)))
            if not terms:       # no key is told apart: uniform attention over the keys
                token = sources[0]
                self.count(len(token.basis))
                terms.append(ir.Select(token.ref, None, named_matrix(
                    f"k{L}_{h}.token", token.basis, None, np.zeros(len(token.basis)))))
            score = f"s{L}_{h}"
            self.bindings.append(ir.Binding(score, ir.ScoreSum(tuple(terms))))
            for s, E in values:
                name = f"a{L}_{h}_{s.name}"
                self.bindings.append(ir.Binding(name, ir.Aggregate(ir.Ref(score), s.ref)))
                new.append(Source(name, s.basis, E))
        self.constant = self.constant + _array(attn.b_O)
        self.sources = sources + new

    def mlp(self, L: int, block) -> None:
        """The MLP of layer L as an opaque node over every source it sees (weights folded
        through each source's E and the LayerNorm), writing d_model outputs."""
        mlp, D = block.mlp, self.D
        ln = reader(block.ln2, D)
        W_in, b_in = _array(mlp.W_in), _array(mlp.b_in)
        W_out, b_out = _array(mlp.W_out), _array(mlp.b_out)
        if not W_out.any() and not b_out.any():
            return                          # an MLP that writes nothing (compiled models)
        M = W_in.shape[1]
        parts = [(s, ln.of_source(s) @ W_in) for s in self.sources]
        parts = [(s, w) for s, w in parts if w.any()]
        b = ln.of_constant(self.constant) @ W_in + b_in
        activation = ACTIVATIONS[self.model.config.activation]
        if not parts:                   # an MLP of constants writes a constant
            self.constant = self.constant + mlp_activation(b, activation) @ W_out + b_out
            return
        self.count(sum(w.size for _, w in parts) + M + M * D + D)
        name = f"m{L}"
        rows = [f"{s.name}:{v}" for s, _ in parts for v in s.basis]
        node = ir.Mlp(tuple(s.ref for s, _ in parts),
                      named_matrix(f"{name}.W_in", rows, range(M),
                              np.concatenate([w for _, w in parts])),
                      named_matrix(f"{name}.b_in", range(M), None, b),
                      named_matrix(f"{name}.W_out", range(M), range(D), W_out),
                      named_matrix(f"{name}.b_out", range(D), None, b_out),
                      activation=activation)
        self.bindings.append(ir.Binding(name, node))
        self.sources = self.sources + [Source(name, tuple(range(D)), np.eye(D))]

    def unembedding(self) -> None:
        if self.progress:
            self.progress("unembedding")
        ln = reader(self.model.ln_final, self.D)
        W_U = _array(self.model.unembed.W_U)
        terms = []
        for s in self.sources:
            table = ln.of_source(s) @ W_U
            if table.any():
                self.count(table.size)
                terms.append(ir.Project(s.ref, named_matrix(f"out.{s.name}", s.basis,
                                                       self.outputs, table)))
        bias = ln.of_constant(self.constant) @ W_U + _array(self.model.unembed.b_U)
        self.count(bias.size)
        terms.append(ir.Project(None, named_matrix("out.bias", self.outputs, None, bias)))
        self.bindings.append(ir.Binding("logits", ir.LogitsSum(tuple(terms))))


# the model's activation -> the Mlp node's ("gelu" there is GPT-2's tanh approximation);
# the circuit program writes its MLPs with the same names
ACTIVATIONS = {"gelu_new": "gelu", "relu": "relu"}
