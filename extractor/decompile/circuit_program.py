"""A pruned circuit written out as a D-RASP program: the same numbers as tables.

The program mirrors `Circuit.forward` with hard masks (extractor/decompile/circuit.py): each used path
becomes a variable with its write E to the residual stream (as in extractor/decompile/paths.py), each kept
query-key product a bilinear score table, each kept key-only term a vector scored against the
head's constant query, each kept value edge an aggregate, each MLP an opaque `mlp` node over its
kept inputs, each kept logit edge a projection. Everything a reader sees whatever the input (the
stream's constant, pruned edges' ablation constants ō, biases, LayerNorm β, the learned offsets)
is folded into the key-only vectors, the MLP's input bias and the logit bias, exactly as the
circuit computes it. tests/test_prune.py checks the two agree.

Replacements (extractor/decompile/primitives.py, chosen in extractor/decompile/replace.py) enter as arguments:
`mlp_outputs` gives an MLP path as a primitive of its input, read through a fitted E like any
other variable instead of through the opaque node, or, for an MLP only the logits read, as a sum
of such readings (a tuple; a part whose E is None is a line the others share, and writes
nothing): each part is projected to the logits, and a part that is an input
read as it is joins that input's own logit table (one table per variable, so a primitive can name
what the two paths vote for together); `tables` gives a score or logit term a primitive
predicate in place of its table, or DROP to delete it.
"""

from __future__ import annotations

import numpy as np
import torch
from attrs import define, field, frozen

from extractor.decompile.circuit import Circuit
from extractor.decompile.paths import ACTIVATIONS, named_matrix
from extractor.decompile.primitives import key_primitives
from extractor.decompile.prune import Layout, alive_paths, used_paths
from rasp_ir import nodes as ir

DROP = object()            # a `tables` entry that deletes the term
UNIFORM = next(p for p in key_primitives() if p.uniform)     # `select(k=tokens, op=False)`


@frozen
class MlpReplacement:
    """An MLP's output as `node` (None: no line, the input itself), a variable over `basis`
    named `name` that writes `E` (len(basis), d_model) to the stream."""
    name: str
    node: ir.Node | None
    basis: tuple
    E: np.ndarray = field(eq=False)
    ref: ir.Node | None = None       # how the program reads it (default: Ref(name))


@define
class Variable:
    name: str
    basis: tuple
    E: np.ndarray                 # (len(basis), d_model)
    ref: ir.Node
    key: str = ""                 # the path's own name: names its tables (unique per path,
                                  # unlike `name`, which a no-op MLP shares with its input)


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().double().cpu().numpy()


def circuit_program(circuit: Circuit, flat: torch.Tensor, tokens: tuple, outputs: tuple,
                    prediction: str | None, n_positions: int | None = None,
                    mlp_outputs: dict | None = None, tables: dict | None = None,
                    bos: str | None = None) -> ir.Program:
    """The program of `circuit` under the hard flat masks `flat` (extractor/decompile/prune.Layout).

    mlp_outputs: {MLP path index: MlpReplacement} replacing opaque MLPs.
    tables: {table name: predicate node, a Matrix, or DROP} for score and logit terms, keyed
    by the names this function gives them (see `table_names`).
    bos: the token every input starts with (the program's @bos), if any.
    """
    c = circuit.config
    P = n_positions or c.n_positions
    layout = Layout(circuit.graph)
    g = circuit.graph
    m = layout.masks(flat, True)
    qk, kb = (x[0].numpy() for x in m.products())
    q, v, mlp_m, out_m = (x[0].numpy() for x in (m.q, m.v, m.mlp, m.out))
    alive = alive_paths(layout, flat)
    used = used_paths(layout, flat, True)
    mlp_outputs, tables = mlp_outputs or {}, tables or {}
    with torch.no_grad():
        cd = _Doubled(circuit)
    ablation = _np(circuit.ablation)
    variables: dict[int, Variable] = {
        0: Variable("token", tuple(tokens), _np(circuit.W_E), ir.Tokens(), "token"),
        1: Variable("pos", tuple(range(P)), _np(circuit.W_pos)[:P], ir.Indices(), "pos")}
    bindings: list[ir.Binding] = []
    parts: dict[int, list[Variable]] = {}      # an MLP read as a sum: its readings
    C = np.zeros(c.d_model)
    for L in range(c.n_layers):
        n = g.before_heads[L]
        WQ, WK, WV = (cd.fold(kind, L) for kind in ("q", "k", "v"))      # (H, D, E) each
        for h in range(c.n_heads):
            values = [p for p in range(n) if v[L, h, p] and used[g.head_path(L, h, p)]]
            if not values:
                continue
            q_const = (C @ WQ[h] + cd.beta("q", L) @ cd.W_Q[L][h] + cd.b_Q[L][h]
                       + ((1 - q[L, h, :n]) @ ablation[:n]) @ WQ[h] + cd.q_offset[L][h])
            terms = []
            for p in range(n):
                for r in range(n):
                    if qk[L, h, p, r] and used[p] and used[r]:
                        name = f"qk{L}_{h}.{variables[p].key}.{variables[r].key}"
                        pred = tables.get(name)
                        if pred is None:
                            pred = named_matrix(name, variables[p].basis, variables[r].basis,
                                           c.scale * (variables[p].E @ WQ[h])
                                           @ (variables[r].E @ WK[h]).T)
                        if pred is not DROP:
                            terms.append(ir.Select(variables[r].ref, variables[p].ref, pred))
            for r in range(n):
                if kb[L, h, r] and used[r]:
                    name = f"k{L}_{h}.{variables[r].key}"
                    pred = tables.get(name)
                    if pred is None:
                        pred = named_matrix(name, variables[r].basis, None,
                                       c.scale * (variables[r].E @ WK[h]) @ q_const)
                    if pred is not DROP:
                        terms.append(ir.Select(variables[r].ref, None, pred))
            if not terms:           # uniform attention over the keys: one all-zero term
                terms.append(UNIFORM.select(variables[0].ref))
            score = f"s{L}_{h}"
            bindings.append(ir.Binding(score, ir.ScoreSum(tuple(terms))))
            for p in values:
                i = g.head_path(L, h, p)
                name = g.paths[i].name
                bindings.append(ir.Binding(name, ir.Aggregate(ir.Ref(score), variables[p].ref)))
                variables[i] = Variable(name, variables[p].basis,
                                        variables[p].E @ WV[h] @ cd.W_O[L][h], ir.Ref(name), name)
        # the heads' constant, as the circuit adds it (over every head, used or not)
        v_const = C @ WV + cd.beta("v", L) @ cd.W_V[L] + cd.b_V[L]                   # (H, E)
        v_const = v_const + np.einsum("hp,pd,hde->he", 1 - v[L, :, :n], ablation[:n], WV)
        C = C + np.einsum("he,hed->d", v_const, cd.W_O[L]) + cd.b_O[L]
        i = g.mlp_path(L)
        if used[i]:
            if isinstance(mlp_outputs.get(i), tuple):
                if not read_by_logits_only(layout, flat, i):
                    raise ValueError(f"{g.paths[i].name} is read by a head or a later MLP: it cannot "
                                     "be a sum")
                parts[i] = []
                for rep in mlp_outputs[i]:
                    if rep.node is not None:
                        bindings.append(ir.Binding(rep.name, rep.node))
                    if rep.E is None:           # a line the parts share; it writes nothing
                        continue
                    parts[i].append(Variable(
                        rep.name, tuple(rep.basis), rep.E,
                        rep.ref if rep.ref is not None else ir.Ref(rep.name),
                        f"{g.paths[i].name}.{rep.name}"))
                variables[i] = parts[i][0]
            elif i in mlp_outputs:
                rep = mlp_outputs[i]
                if rep.node is not None:
                    bindings.append(ir.Binding(rep.name, rep.node))
                variables[i] = Variable(rep.name, tuple(rep.basis), rep.E,
                                        rep.ref if rep.ref is not None else ir.Ref(rep.name),
                                        g.paths[i].name)
            else:
                bindings.append(ir.Binding(g.paths[i].name, _mlp_node(
                    cd, L, C, mlp_m[L], ablation, variables, used, alive, i)))
                variables[i] = Variable(g.paths[i].name, tuple(range(c.d_model)),
                                        np.eye(c.d_model), ir.Ref(g.paths[i].name),
                                        g.paths[i].name)
    WU = cd.fold("out", 0)
    reads = []                 # [table key, variable, logit matrix], one per variable read
    for p in range(len(g)):
        if out_m[p] and used[p]:
            for var in parts.get(p, [variables[p]]):
                same = next((r for r in reads if p in parts and r[1].ref == var.ref
                             and r[1].basis == var.basis), None)
                if same is not None:          # a sum's part that reads an input as it is
                    same[2] = same[2] + var.E @ WU
                else:
                    reads.append([var.key, var, var.E @ WU])
    terms = []
    for key, var, matrix in reads:
        name = f"out.{key}"
        pred = tables.get(name)
        if pred is None:
            pred = named_matrix(name, var.basis, outputs, matrix)
        if pred is not DROP:
            terms.append(ir.Project(var.ref, pred))
    pred = tables.get("out.bias")
    if pred is None:
        bias = ((C + (1 - out_m) @ ablation) @ WU + cd.beta("out", 0) @ cd.W_U + cd.b_U
                + cd.out_offset)
        pred = named_matrix("out.bias", outputs, None, bias)
    if pred is DROP and not terms:          # the logits are all zeros
        pred = named_matrix("out.bias", outputs, None, np.zeros(len(outputs)))
    if pred is not DROP:
        terms.append(ir.Project(None, pred))
    bindings.append(ir.Binding("logits", ir.LogitsSum(tuple(terms))))
    output = ir.Ref("logits")
    if prediction is not None:
        bindings.append(ir.Binding("prediction", ir.Predict(prediction, ir.Ref("logits"))))
        output = ir.Ref("prediction")
    return ir.Program(bindings=tuple(bindings), output=output, vocab=tuple(tokens), maxlen=P,
                      causal=c.causal, bos=bos, attention="softmax")


def read_by_logits_only(layout: Layout, flat: torch.Tensor, index: int) -> bool:
    """Whether no head (its query, key or value) and no later MLP reads path `index`: only
    the logits (or nothing) do, so the path can be replaced by several variables, each
    projected."""
    m = layout.masks(flat, True)
    qk, kb = (x[0] for x in m.products())
    return not (bool(m.v[0, ..., index].any()) or bool(m.mlp[0, ..., index].any())
                or bool(qk[..., index, :].any())
                or bool(qk[..., :, index].any()) or bool(kb[..., index].any()))


def _mlp_node(cd, L, C, masks, ablation, variables, used, alive, index) -> ir.Mlp:
    """MLP L over its kept, used inputs; the rest of its input is a constant in b_in. An MLP
    whose inputs are all pruned reads `token` through zero weights (it writes a constant)."""
    W = cd.fold("mlp", L)[0]                                                  # (D, M)
    inputs = [j for j in range(index) if masks[j] and used[j] and alive[j]]
    b = ((C + (1 - masks[:index]) @ ablation[:index]) @ W + cd.beta("mlp", L) @ cd.W_in[L]
         + cd.b_in[L] + cd.mlp_offset[L])
    parts = [(variables[j], variables[j].E @ W) for j in inputs]
    if not parts:
        parts = [(variables[0], np.zeros((len(variables[0].basis), W.shape[1])))]
    name = f"m{L}"
    rows = [f"{var.name}:{x}" for var, _ in parts for x in var.basis]
    M, D = W.shape[1], cd.W_out[L].shape[1]
    W_in = np.concatenate([w for _, w in parts])
    return ir.Mlp(tuple(var.ref for var, _ in parts),
                  named_matrix(f"{name}.W_in", rows, range(M), W_in),
                  named_matrix(f"{name}.b_in", range(M), None, b),
                  named_matrix(f"{name}.W_out", range(M), range(D), cd.W_out[L]),
                  named_matrix(f"{name}.b_out", range(D), None, cd.b_out[L]),
                  activation=ACTIVATIONS[cd.activation])


class _Doubled:
    """The circuit's weights and folded reader matrices in float64 numpy."""

    def __init__(self, circuit: Circuit):
        self.circuit = circuit
        for name in ("W_Q", "W_V", "W_O", "b_Q", "b_V", "b_O", "W_in", "b_in", "W_out",
                     "b_out", "W_U", "b_U", "q_offset", "mlp_offset", "out_offset"):
            setattr(self, name, _np(getattr(circuit, name)))
        self.activation = circuit.config.activation

    def _norm(self, kind, L):
        c = self.circuit
        return {"q": c.ln_q, "k": c.ln_k, "v": c.ln_v, "mlp": c.ln_mlp}[kind][L] \
            if kind != "out" else c.ln_out

    def fold(self, kind: str, L: int) -> np.ndarray:
        """The reader's folded matrix: (H, D, E) for q/k/v, (1, D, M) for mlp, (D, V) for out."""
        c, norm = self.circuit, self._norm(kind, L)
        W = {"q": c.W_Q, "k": c.W_K, "v": c.W_V, "mlp": c.W_in}.get(kind)
        W = W[L] if W is not None else c.W_U
        scale = norm.log_scale.detach().double().exp()
        if kind in ("q", "k", "v"):
            return _np(c._fold(norm, W.double(), scale[:, None, None]))
        folded = _np(c._fold(norm, W.double(), scale[0]))
        return folded[None] if kind == "mlp" else folded

    def beta(self, kind: str, L: int) -> np.ndarray:
        return _np(self._norm(kind, L).beta)


def table_names(program: ir.Program) -> list[str]:
    """The score and logit tables of a program built here, in program order."""
    names = []
    for b in program.bindings:
        for node in ir.walk(b.value):
            if isinstance(node, (ir.Select, ir.Project)) and isinstance(node.predicate, ir.Matrix):
                names.append(node.predicate.name)
    return names
