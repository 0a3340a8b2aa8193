"""A Plan to transformer weights: residual layout, embeddings, heads, MLPs, unembedding.

Every constant below is derived from the program (its maximum length and value sets) and the
float format, never tuned: attention is made hard by scores far enough apart that every
non-selected weight underflows to exactly zero, and discretising MLPs place their steps at the
midpoints between neighbouring values with ramps narrower than half the smallest gap.
"""

from __future__ import annotations

import math

import attrs
import numpy as np

from rasp_ir.interpreter import to_bool
from rasp_ir.limits import too_large

from . import vectorised as V
from .contract import Atom, Block, Dense, Head, Linear, Plan, Var

ONE, BOS = 0, 1          # residual directions: "a program position" and "the BOS position"
UNDERFLOW = 104.0        # exp(-104) is below float32's smallest subnormal: an exact zero
# In a GELU model (gelu `mlp` nodes) the compiler's own units are scaled by this: each of
# their pre-activations is 0 or at least 1 in size, and GPT-2's tanh GELU of an x with
# |x| >= 20 is x or 0 exactly in float32 and float64 (tanh's argument is then above 300,
# where tanh rounds to ±1), so GELU(20 x) / 20 = ReLU(x) on every input they see
GELU_SCALE = 20.0


@attrs.define
class Layout:
    """Where each variable lives in the residual stream."""
    offsets: dict          # Var -> first dimension
    width: int
    labels: list           # one name per dimension

    @classmethod
    def of(cls, variables: list[Var]) -> Layout:
        offsets, labels = {}, ["one", "bos"]
        for var in variables:
            if var.affine is not None:
                continue
            offsets[var] = len(labels)
            if var.kind == "num":
                labels.append(var.name)
            else:
                labels += [f"{var.name}:{v!r}" for v in var.values]
        return cls(offsets, len(labels), labels)

    def dims(self, var: Var) -> slice:
        start = self.offsets[var]
        return slice(start, start + var.width)


def bos_vector(var: Var) -> np.ndarray:
    """What `var` holds at the BOS position (attention outputs hold their default there)."""
    if var.bos is None and var.kind != "num":
        if var.kind == "cat" and None in var.values:
            return var.encode(None)
        return np.zeros(var.width)
    if var.kind == "num":
        return np.array([float(var.bos or 0.0)])
    return var.encode(var.bos)


def read(layout: Layout, linear: Linear) -> np.ndarray:
    """The (d_model, width) matrix of a linear read; the constant rides on `one`."""
    W = np.zeros((layout.width, linear.width))
    W[ONE] += linear.const
    for var, rows in linear.rows.items():
        W[layout.dims(var)] += rows
    return W


def hard_scale(maxlen: int) -> float:
    """Score of one satisfied select: half of it separates selected keys from the BOS sink."""
    return 2.0 * (UNDERFLOW + math.log(maxlen + 2))


def head_weights(head: Head, layout: Layout, maxlen: int):
    """(W_Q, W_K, W_V, W_O) of one head, each over the full residual, with d_head columns."""
    columns_q, columns_k = [], []
    bos_self = 0.0
    if head.mode in ("mean", "width", "count"):
        S = hard_scale(maxlen)
        m = len(head.atoms)
        for atom in head.atoms:
            q, k = _atom(atom, layout, S)
            columns_q.append(q)
            columns_k.append(k)
        sink = S * (m - 0.5) if head.mode == "mean" else S * m
        top = S * m
    else:
        bound = 0.0
        by_key: dict = {}       # terms reading one key variable share its columns
        for qvar, kvar, matrix in head.scores:
            q, k = _bilinear(qvar, kvar, matrix, layout)
            if kvar in by_key:
                by_key[kvar][0] += q
            else:
                by_key[kvar] = [q, k]
            bound += np.abs(matrix).max(initial=0.0)
        columns_q += [q for q, _ in by_key.values()]
        columns_k += [k for _, k in by_key.values()]
        sink = -(bound + 2 * UNDERFLOW)          # BOS is not a key of softmax attention
        top = bound
    # every query may fall back on BOS (the sink); the BOS query attends to itself only
    q_sink, k_sink = np.zeros((layout.width, 1)), np.zeros((layout.width, 1))
    q_sink[ONE, 0], k_sink[BOS, 0] = 1.0, sink
    if head.mode == "count":       # BOS scores as a selected key plus log(D - w(query))
        var, extra = head.sink
        q_sink[ONE, 0] = top
        q_sink[layout.dims(var), 0] += extra
        k_sink[BOS, 0] = 1.0
        top += float(np.max(extra))
    bos_self = abs(sink) + 2 * top + 2 * UNDERFLOW
    q_self, k_self = np.zeros((layout.width, 1)), np.zeros((layout.width, 1))
    q_self[BOS, 0], k_self[BOS, 0] = 1.0, bos_self
    W_Q = np.concatenate(columns_q + [q_sink, q_self], axis=1)
    W_K = np.concatenate(columns_k + [k_sink, k_self], axis=1)
    out = head.out
    if head.mode == "width":
        W_V = np.zeros((layout.width, 1))
        W_V[BOS, 0] = 1.0                       # mean of "is BOS" over BOS and w keys: 1/(w+1)
    else:
        W_V = read(layout, head.value)
        # at BOS the value is the default, whatever the read variables hold there
        W_V[BOS] = bos_vector(out) - sum((bos_vector(v) @ r for v, r in head.value.rows.items()),
                                         np.zeros(head.value.width))
    W_O = np.zeros((W_V.shape[1], layout.width))
    W_O[:, layout.dims(out)] = np.eye(out.width)
    return W_Q, W_K, W_V, W_O


def layer_heads(heads: list[Head], layout: Layout, maxlen: int) -> list:
    """The weights of one layer's heads. Softmax aggregates of one selector over different
    values (an extracted program's a0_0_token and a0_0_pos) are one head: the same scores,
    their values side by side."""
    groups: dict = {}
    for head in heads:
        key = ("softmax", head.node.selector) if head.mode == "softmax" else id(head)
        groups.setdefault(key, []).append(head)
    out = []
    for members in groups.values():
        weights = [head_weights(h, layout, maxlen) for h in members]
        W_Q, W_K = weights[0][:2]
        out.append((W_Q, W_K, np.concatenate([w[2] for w in weights], axis=1),
                    np.concatenate([w[3] for w in weights], axis=0)))
    return out


class TooLarge(Exception):
    """A weight matrix past MAX_TABLE_ENTRIES, found before it is allocated; the compile
    driver reports it as E306."""


def sized(entries: int, what: str) -> None:
    message = too_large(entries, what)
    if message is not None:
        raise TooLarge(message)


def _atom(atom: Atom, layout: Layout, S: float):
    """Query and key columns with q·k = S·table[query value, key value]."""
    key_width = atom.table.shape[1]
    sized(2 * layout.width * key_width, f"a head's query and key weights (residual width "
          f"{layout.width:,} × {key_width:,} key values, twice)")
    Q = np.zeros((layout.width, key_width))
    K = np.zeros((layout.width, key_width))
    if atom.query is None:
        Q[ONE] = S * atom.table[0]
    else:
        Q[layout.dims(atom.query)] = S * atom.table
    if atom.key is None:
        K[ONE, 0] = 1.0
    else:
        K[layout.dims(atom.key)] = np.eye(key_width)
        K[BOS] -= bos_vector(atom.key)          # the BOS key reads as no value at all
    return Q, K


def _bilinear(qvar, kvar, matrix, layout):
    key_width = matrix.shape[1]
    sized(2 * layout.width * key_width, f"a head's query and key weights (residual width "
          f"{layout.width:,} × {key_width:,} key values, twice)")
    Q = np.zeros((layout.width, key_width))
    K = np.zeros((layout.width, key_width))
    if qvar is None:
        Q[ONE] = matrix[0]
    else:
        Q[layout.dims(qvar)] = matrix
    if kvar is None:
        K[ONE, 0] = 1.0
    else:
        K[layout.dims(kvar)] = np.eye(key_width)
        K[BOS] -= bos_vector(kvar)
    return Q, K


# ---------------------------------------------------------------- MLPs

def block_weights(block: Block, layout: Layout):
    """(W_in, W_out) of one lookup/discretising MLP; every unit is off at the BOS position.
    Units come per combination of the categorical inputs (itertools.product order): one that
    writes the output at the smallest numerical input, then, for each step between
    neighbouring numerical inputs where the output changes, two ramp units."""
    fn, out = block.fn, block.out
    cats = [leaf for leaf in fn.leaves if leaf.kind != "num"]
    nums = [leaf for leaf in fn.leaves if leaf.kind == "num"]
    k = len(cats)
    inputs = sorted(set(nums[0].values)) if nums else []
    outputs = _outputs(fn, out, cats, nums, inputs)       # (combos, numerical inputs, out)
    n = outputs.shape[0]
    sized(n * layout.width, f"an MLP's input weights ({n:,} value combinations × residual "
          f"width {layout.width:,})")
    match = np.zeros((n, layout.width))      # row c: 1 on each categorical value of combo c
    for var, codes in zip(cats, np.indices([len(v.values) for v in cats]).reshape(k, n)):
        positions = _positions(var, var.values)
        match[np.arange(n), layout.dims(var).start + positions[codes]] += 1.0
    if not nums:
        gate = float(k + 1)
        W_in = match
        W_in[:, ONE] -= k - 1
        W_in[:, BOS] -= gate
        return W_in.T, _write(layout, out, outputs[:, 0])
    (var,) = nums
    gaps = [b - a for a, b in zip(inputs, inputs[1:])]
    L = 4.0 / min(gaps) if gaps else 1.0
    span = inputs[-1] - inputs[0]
    M = L * span + 2.0
    x_at_bos = abs(float(bos_vector(var)[0]))
    gate = L * (max(abs(inputs[0]), abs(inputs[-1])) + x_at_bos + 1) + M * (k + 1) + 2
    x_read = read(layout, var.affine)[:, 0] if var.affine is not None else None
    if x_read is None:
        x_read = np.zeros(layout.width)
        x_read[layout.dims(var).start] = 1.0
    base = match.copy()
    base[:, ONE] -= k - 1
    base[:, BOS] -= gate
    # ReLU(L(x-t)+1) - ReLU(L(x-t)) is 0 below t - 1/L and 1 above t; a wrong categorical
    # combination subtracts M and keeps both units at 0
    ramp = M * match + L * x_read
    steps = [(a + b) / 2 for a, b in zip(inputs, inputs[1:])]
    shift = {offset: np.array([-L * t + offset - M * k for t in steps])
             for offset in (1.0, 0.0)}
    deltas = outputs[:, 1:] - outputs[:, :-1]                 # (combos, steps, out)
    live = deltas.any(axis=2)
    # slots per combination: the base unit, then (+, -) per step; kept where the output moves
    kept = np.ones((n, 1 + 2 * len(steps)), dtype=bool)
    kept[:, 1::2] = kept[:, 2::2] = live
    combo, slot = np.nonzero(kept)
    first, step, rising = slot == 0, (slot - 1) // 2, slot % 2 == 1
    W_in = np.empty((combo.size, layout.width))
    rows = np.empty((combo.size, out.width))
    W_in[first] = base[combo[first]]
    rows[first] = outputs[combo[first], 0]
    ramps, c, j, up = ~first, combo[~first], step[~first], rising[~first]
    columns = ramp[c]
    columns[:, ONE] += np.where(up, shift[1.0][j], shift[0.0][j])
    columns[:, BOS] -= gate
    W_in[ramps] = columns
    rows[ramps] = np.where(up, 1.0, -1.0)[:, None] * deltas[c, j]
    return W_in.T, _write(layout, out, rows)


def _outputs(fn, out: Var, cats: list, nums: list, inputs: list) -> np.ndarray:
    """The encoded output for every combination of the categorical inputs (product order) and
    each numerical input in `inputs` (one, None, where there is no numerical input): shape
    (combos, len(inputs) or 1, out.width); zero where the function is undefined or its value
    has no encoding (combinations the program never reaches)."""
    values, undefined = fn.column()
    order = [fn.leaves.index(leaf) for leaf in cats + nums]
    values = values.transpose(order)
    undefined = None if undefined is None else undefined.transpose(order)
    if nums:
        at = _positions(nums[0], inputs)
        values, undefined = values[..., at], None if undefined is None else undefined[..., at]
    distinct, codes = V.factorize(np.asarray(values))
    encoded = np.zeros((len(distinct), out.width))
    for i, value in enumerate(distinct):
        try:
            encoded[i] = out.encode(value)
        except (KeyError, TypeError, ValueError):
            pass
    table = encoded[codes]
    if undefined is not None:
        table[undefined] = 0.0
    return table.reshape(-1, max(1, len(inputs)), out.width)


def _write(layout: Layout, out: Var, rows: np.ndarray) -> np.ndarray:
    """W_out: each unit's row written into the output variable's dimensions."""
    W_out = np.zeros((rows.shape[0], layout.width))
    W_out[:, layout.dims(out)] = rows
    return W_out


def _positions(var: Var, values) -> np.ndarray:
    """`_position` of each of `values`, with one pass over the variable's values."""
    first: dict = {}
    for i, v in enumerate(var.values):
        first.setdefault((type(v), v), i)
    return np.array([first[(type(v), v)] if (type(v), v) in first else _position(var, v)
                     for v in values], dtype=np.int64)


def _position(var: Var, value) -> int:
    for i, v in enumerate(var.values):
        if v == value and type(v) is type(value):
            return i
    return var.values.index(value)


def dense_weights(dense: Dense, layout: Layout, activation: str):
    """(W_in, W_out) of an `mlp` node placed as it stands: its inputs read from the residual,
    b_in on `one`, b_out through one more unit that is on at program positions only. At the
    BOS position every unit reads 0 (the BOS vectors of its inputs are cancelled), so the
    output is zero there, as a vector variable's BOS vector is."""
    R = read(layout, dense.read)                                  # (D, d_in)
    R[BOS] -= sum((bos_vector(v) @ r for v, r in dense.read.rows.items()),
                  np.zeros(dense.read.width))
    W_in = R @ dense.W_in                                          # (D, units)
    W_in[ONE] += dense.b_in
    W_out = _write(layout, dense.out, dense.W_out)                 # (units, D)
    if dense.b_out.any():
        scale = GELU_SCALE if activation == "gelu_new" else 1.0
        unit = np.zeros((layout.width, 1))
        unit[ONE, 0] = scale
        W_in = np.concatenate([W_in, unit], axis=1)
        W_out = np.concatenate([W_out, _write(layout, dense.out, dense.b_out[None] / scale)])
    return W_in, W_out


# ---------------------------------------------------------------- the whole model

@attrs.define
class Weights:
    """Numpy weights in the Transformer module's names and shapes, plus the layout."""
    arrays: dict
    layout: Layout
    n_layers: int
    n_heads: int
    d_head: int
    d_mlp: int
    vocab: list
    n_positions: int


def assemble(plan: Plan, program, maxlen: int) -> Weights:
    layout = Layout.of(plan.vars)
    D = layout.width
    vocab = ["<compiler_bos>"] + list(program.vocab)
    # the one-hot residual: every value of every variable is a dimension, and each position a
    # row of W_pos (sharpen(length, 2) under @maxlen 65536 asked for 32 GiB here)
    sized((len(vocab) + maxlen + 1) * D, f"the token and position embeddings "
          f"({len(vocab):,} tokens + {maxlen + 1:,} positions × residual width {D:,})")
    W_E = np.zeros((len(vocab), D))
    W_E[0, BOS] = 1.0
    sources = {v.name: v for v in plan.vars if v.time == 0}
    for i, token in enumerate(program.vocab, start=1):
        W_E[i, ONE] = 1.0
        for name, var in sources.items():
            if name == "indices":
                continue
            view = name.split("_", 1)[1] if "_" in name else "asis"
            value = _view(token, view)
            W_E[i, layout.dims(var)] = var.encode(value)
    W_pos = np.zeros((maxlen + 1, D))
    if "indices" in sources:
        var = sources["indices"]
        for p in range(1, maxlen + 1):
            W_pos[p, layout.dims(var)] = var.encode(p - 1)
    layers = max(plan.layers, 1)
    per_layer_heads = [[h for h in plan.heads if h.time == 2 * l + 1] for l in range(layers)]
    per_layer_blocks = [[b for b in plan.blocks if b.time == 2 * l + 2] for l in range(layers)]
    per_layer_dense = [[d for d in plan.dense if d.time == 2 * l + 2] for l in range(layers)]
    heads = [layer_heads(hs, layout, maxlen) for hs in per_layer_heads]
    scale = GELU_SCALE if plan.activation == "gelu_new" else 1.0

    def scaled(block):
        w_in, w_out = block_weights(block, layout)
        return w_in * scale, w_out / scale
    mlps = [[scaled(b) for b in bs] + [dense_weights(d, layout, plan.activation) for d in ds]
            for bs, ds in zip(per_layer_blocks, per_layer_dense)]
    n_heads = max([len(hs) for hs in heads] + [1])
    d_head = max([w.shape[1] for hs in heads for h in hs for w in h[:3]] + [1])
    d_mlp = max([sum(w_in.shape[1] for w_in, _ in ms) for ms in mlps] + [1])
    sized(layers * (4 * n_heads * D * d_head + 2 * D * d_mlp), f"the model's layers ({layers} × "
          f"({n_heads} heads × residual width {D:,} × head width {d_head:,} × 4 + residual "
          f"width × MLP width {d_mlp:,} × 2))")
    arrays = {"embed.W_E": W_E, "pos_embed.W_pos": W_pos}
    for l in range(layers):
        Q = np.zeros((n_heads, D, d_head))
        K, V = np.zeros_like(Q), np.zeros_like(Q)
        O = np.zeros((n_heads, d_head, D))
        for h, (wq, wk, wv, wo) in enumerate(heads[l]):
            Q[h, :, :wq.shape[1]] = wq
            K[h, :, :wk.shape[1]] = wk
            V[h, :, :wv.shape[1]] = wv
            O[h, :wo.shape[0]] = wo
        W_in = np.zeros((D, d_mlp))
        W_out = np.zeros((d_mlp, D))
        col = 0
        for w_in, w_out in mlps[l]:
            n = w_in.shape[1]
            W_in[:, col:col + n] = w_in
            W_out[col:col + n] = w_out
            col += n
        p = f"blocks.{l}."
        arrays.update({
            p + "attn.W_Q": Q, p + "attn.W_K": K, p + "attn.W_V": V, p + "attn.W_O": O,
            p + "attn.b_Q": np.zeros((n_heads, d_head)), p + "attn.b_K": np.zeros((n_heads, d_head)),
            p + "attn.b_V": np.zeros((n_heads, d_head)), p + "attn.b_O": np.zeros(D),
            p + "mlp.W_in": W_in, p + "mlp.b_in": np.zeros(d_mlp),
            p + "mlp.W_out": W_out, p + "mlp.b_out": np.zeros(D),
        })
    W_U = read(layout, plan.output)
    arrays["unembed.W_U"] = W_U
    arrays["unembed.b_U"] = np.zeros(W_U.shape[1])
    return Weights(arrays, layout, layers, n_heads, d_head, d_mlp, vocab, maxlen + 1)


def _view(token, view: str):
    if view == "asis":
        return token
    if view == "bool":
        return to_bool(token)
    return {"str": str, "int": int, "float": float}[view](token)
