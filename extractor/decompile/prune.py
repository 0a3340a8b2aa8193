"""Causal pruning of a circuit in three stages, with learned masks and optimal ablation.

Objective (docs/extractor.md, Pruning in three stages; the KL is a mean per scored position, not
the reference's per vocabulary entry): KL(original ‖ pruned) + λ · E[number of kept edges].
Each edge has a logit θ; a batch draws one mask per sequence with the window sampler of Li &
Janson: m = clip((p − u)/w + ½, 0, 1), p = σ(θ), w = p(1 − p), u uniform, whose gradient
reaches p with slope 1 inside the window and not outside it. Pruned edges read the learned
ablation constants ō; the LLN-A scale of every reader is learned jointly.

The stages tie the masks of extractor/decompile/circuit.py into groups:
1. components: one edge per (component, reader): all paths a head writes share their masks;
2. full paths: one edge per (path, reader), for what stage 1 kept;
3. query-key products: one edge per (query path, key path) product and per key-only term of
   every head, for the query and key paths stage 2 kept; values, MLPs and logits stay fixed.

Everything is seeded: a run is a pure function of (model, task, λ, settings, seed).
"""

from __future__ import annotations

import time

import attrs
import numpy as np
import torch
from attrs import asdict, frozen

from extractor.decompile.circuit import Circuit, Graph, Masks, full_masks, rows
from extractor.decompile.linearise import kl_divergence
from extractor.tasks.batches import collate

KINDS = ("q", "k", "v", "mlp", "out", "qk", "kb")


@frozen
class PruneSettings:
    steps: tuple = (300, 200, 200)      # per stage
    batch: int = 16                      # sequences per step, each with its own mask sample
    pool: int = 24                       # distinct training batches (their targets cached)
    init_logit: float = 3.0              # σ(3) = 0.95: every edge starts (almost) kept
    lr_mask: float = 0.1
    lr_scale: float = 0.01
    lr_constants: float = 2e-3
    selection: int = 64                  # sequences per length bucket for the hard-mask check
    max_length: int | None = None        # longest training sequence (default: the task's)
    # a stage ends early once its hard masks have not changed for `patience` steps, after at
    # least `min_steps` (0: every stage runs all its steps)
    patience: int = 0
    min_steps: int = 100
    # answer positions a training step scores, drawn afresh each step (0: every one)
    positions: int = 0

    def to_dict(self) -> dict:
        out = asdict(self)
        if not self.patience:           # runs without early stops keep their cache keys
            del out["patience"], out["min_steps"]
        if not self.positions:          # nor do runs that score every position
            del out["positions"]
        return out


class Layout:
    """All masks of a graph as one flat vector (one entry per possible edge)."""

    def __init__(self, graph: Graph):
        L, H, P = graph.n_layers, graph.n_heads, len(graph)
        self.graph = graph
        self.shapes = {"q": (L, H, P), "k": (L, H, P), "v": (L, H, P), "mlp": (L, P),
                       "out": (P,), "qk": (L, H, P, P), "kb": (L, H, P)}
        self.offsets, n = {}, 0
        for kind in KINDS:
            self.offsets[kind] = n
            n += int(np.prod(self.shapes[kind]))
        self.size = n
        full = full_masks(graph)
        valid = {kind: getattr(full, kind)[0] for kind in ("q", "k", "v", "mlp", "out")}
        valid["qk"] = valid["q"][..., :, None] * valid["k"][..., None, :]
        valid["kb"] = valid["k"]
        self.valid = self.flatten(valid).bool()

    def flatten(self, parts: dict) -> torch.Tensor:
        """One float vector (float64 when any part is: a compiled model's circuit)."""
        wide = any(parts[k].dtype == torch.float64 for k in KINDS)
        dtype = torch.float64 if wide else torch.float32
        return torch.cat([parts[k].reshape(-1).to(dtype) for k in KINDS])

    def part(self, flat: torch.Tensor, kind: str) -> torch.Tensor:
        start = self.offsets[kind]
        shape = self.shapes[kind]
        return flat[..., start:start + int(np.prod(shape))].reshape(*flat.shape[:-1], *shape)

    def masks(self, flat: torch.Tensor, products: bool) -> Masks:
        """(B, N) or (N,) flat masks as Masks; qk and kb only when `products`."""
        if flat.dim() == 1:
            flat = flat[None]
        parts = {k: self.part(flat, k) for k in KINDS}
        return Masks(parts["q"], parts["k"], parts["v"], parts["mlp"], parts["out"],
                     parts["qk"] if products else None, parts["kb"] if products else None)

    def index(self, kind: str, *where) -> int:
        return self.offsets[kind] + int(np.ravel_multi_index(where, self.shapes[kind]))


@frozen
class Stage:
    """Which flat entries are free (and their groups) and the values of the fixed ones."""
    name: str
    groups: torch.Tensor     # (N,) group of each entry, -1 where fixed
    fixed: torch.Tensor      # (N,) values of the fixed entries
    products: bool

    @property
    def n_groups(self) -> int:
        return int(self.groups.max()) + 1 if (self.groups >= 0).any() else 0

    def expand(self, group_masks: torch.Tensor) -> torch.Tensor:
        """(B, G) group masks → (B, N) flat masks."""
        B = group_masks.shape[0]
        flat = self.fixed.expand(B, -1).clone()
        free = self.groups >= 0
        flat[:, free] = group_masks[:, self.groups[free]]
        return flat


def alive_paths(layout: Layout, flat: torch.Tensor) -> list[bool]:
    """Which paths carry anything: token, pos and the MLPs (an MLP whose inputs are all
    pruned still writes a constant); a head's path when its value edge is kept and its source
    carries something. A dead path is exactly zero (circuit.py multiplies it by its value
    mask), so no reader needs it."""
    g = layout.graph
    v = layout.part(flat, "v")
    alive = []
    for p in g.paths:
        if p.head is None:
            alive.append(True)
        else:
            alive.append(bool(v[p.layer, p.head, p.source] > 0) and alive[p.source])
    return alive


def used_paths(layout: Layout, flat: torch.Tensor, products: bool) -> list[bool]:
    """Which living paths reach the logits through kept edges (backward from the output)."""
    g = layout.graph
    alive = alive_paths(layout, flat)
    m = layout.masks(flat, products)
    qk, kb = (x[0] for x in m.products())
    used = [False] * len(g)
    for i in reversed(range(len(g))):
        if not alive[i]:
            continue
        readers = m.out[0, i] > 0
        for j in range(i + 1, len(g)):
            if not used[j]:
                continue
            p = g.paths[j]
            if p.head is None:
                readers |= bool(m.mlp[0, p.layer, i] > 0)
            else:
                L, h = p.layer, p.head
                if p.source == i and m.v[0, L, h, i] > 0:
                    readers = True
                n = g.before_heads[L]
                if i < n and (qk[L, h, i, :n].any() or qk[L, h, :n, i].any() or kb[L, h, i]):
                    readers = True
        used[i] = bool(readers)
    return used


def kept_edges(layout: Layout, flat: torch.Tensor, products: bool) -> list[int]:
    """The kept edges that matter: from a used path (into a used reader)."""
    g = layout.graph
    used = used_paths(layout, flat, products)
    kinds = ("mlp", "out", "v", "qk", "kb") if products else ("q", "k", "v", "mlp", "out")
    kept = []
    for kind in kinds:
        part = layout.part(flat, kind)
        for where in zip(*np.nonzero(part.numpy() > 0)):
            i = layout.index(kind, *where)
            if kind == "out":
                ok = used[where[0]]
            elif kind == "mlp":
                ok = used[where[1]] and used[g.mlp_path(where[0])]
            elif kind == "v":
                L, h, p = where
                ok = used[g.head_path(L, h, p)]
            else:
                L, h = where[0], where[1]
                reads = [g.head_path(L, h, p) for p in range(g.before_heads[L])]
                ok = all(used[x] for x in where[2:]) and any(used[x] for x in reads)
            if ok:
                kept.append(i)
    return kept


def stage_components(layout: Layout) -> Stage:
    g, keys, groups = layout.graph, {}, torch.full((layout.size,), -1)
    node = [p.node for p in g.paths]
    for kind in ("q", "k", "v", "mlp", "out"):
        part = layout.part(layout.valid, kind)
        for where in zip(*np.nonzero(part.numpy())):
            reader = (kind,) + tuple(int(w) for w in where[:-1])
            key = reader + (node[where[-1]],)
            if key not in keys:
                keys[key] = len(keys)
            groups[layout.index(kind, *where)] = keys[key]
    return Stage("components", groups, torch.zeros(layout.size), False)


def stage_paths(layout: Layout, previous: torch.Tensor) -> Stage:
    """One edge per kept (path, reader) of the previous stage's hard masks."""
    keep = set(kept_edges(layout, previous, False))
    groups = torch.full((layout.size,), -1)
    for g, i in enumerate(sorted(keep)):
        groups[i] = g
    fixed = previous.clone()
    fixed[groups >= 0] = 0
    return Stage("paths", groups, with_products(layout, fixed), False)


def stage_products(layout: Layout, previous: torch.Tensor) -> Stage:
    """One edge per product and key-only term of the kept query and key paths; everything
    else fixed at the previous stage's values."""
    flat = with_products(layout, previous)
    keep = set(kept_edges(layout, flat, True))
    groups = torch.full((layout.size,), -1)
    for g, i in enumerate(i for i in sorted(keep) if i >= layout.offsets["qk"]):
        groups[i] = g
    return Stage("products", groups, flat, True)


def with_products(layout: Layout, flat: torch.Tensor) -> torch.Tensor:
    """flat with qk = q ⊗ k and kb = k written out (what stages 1 and 2 imply)."""
    m = layout.masks(flat, False)
    qk, kb = m.products()
    parts = {k: layout.part(flat, k) for k in ("q", "k", "v", "mlp", "out")}
    parts["qk"], parts["kb"] = qk[0], kb[0]
    return layout.flatten(parts)


def sample_masks(theta: torch.Tensor, B: int, generator: torch.Generator) -> torch.Tensor:
    """(B, G) masks from logits θ (G,): the window sampler with its straight-through gradient."""
    p = torch.sigmoid(theta)
    w = (p * (1 - p)).detach().clamp_min(1e-6)
    u = torch.rand(B, theta.shape[0], generator=generator)
    m = ((p - u) / w + 0.5).clamp(0, 1)
    inside = ((m > 0) & (m < 1)).float()
    return m.detach() + (p - p.detach()) * inside


class Data:
    """Seeded training batches with the original model's logits cached, and a selection set
    (its own seed) for judging hard masks. Neither overlaps the evaluation sets, which use
    other seeds. The batches live on the model's device."""

    def __init__(self, model, task, settings: PruneSettings, seed: int):
        device = model.embed.W_E.device
        rng = np.random.default_rng([seed, 2718])
        top = min(settings.max_length or task.max_length, task.max_length)
        examples = [task.sample(rng, task.min_length, top, offset=False)
                    for _ in range(settings.pool * settings.batch)]
        examples.sort(key=lambda e: len(e.tokens))        # similar lengths: little padding
        chunks = [examples[i:i + settings.batch] for i in range(0, len(examples), settings.batch)]
        order = np.random.default_rng([seed, 31]).permutation(len(chunks))
        self.batches = [on_device(collate(chunks[i], task.vocab.pad, task.mode), device)
                        for i in order]
        self.mode = task.mode
        with torch.no_grad():
            self.targets = [model(b.tokens, position_ids=b.positions).float()
                            for b in self.batches]
        srng = np.random.default_rng([seed, 1618])
        self.selection = {}
        for lo, hi in task.test_buckets:
            chosen = sorted((task.sample(srng, lo, hi, offset=False)
                             for _ in range(settings.selection)), key=lambda e: len(e.tokens))
            parts = [chosen[i:i + 32] for i in range(0, len(chosen), 32)]
            batches = [on_device(collate(p, task.vocab.pad, task.mode), device) for p in parts]
            with torch.no_grad():
                targets = [model(b.tokens, position_ids=b.positions).float() for b in batches]
            self.selection[f"{lo}-{hi}"] = list(zip(batches, targets))


def on_device(batch, device: torch.device):
    """The batch's tensors on `device` (the batch itself on the CPU)."""
    if device.type == "cpu":
        return batch
    return attrs.evolve(batch, tokens=batch.tokens.to(device),
                        positions=batch.positions.to(device),
                        targets=batch.targets.to(device), scored=batch.scored.to(device))


def answers_from(batch) -> int:
    """The first position any sequence of the batch is scored at (the circuit need not
    answer before it)."""
    scored = batch.scored.any(0).nonzero()
    return int(scored[0]) if len(scored) else 0


def scored_rows(batch, start: int, count: int, generator: torch.Generator) -> int | torch.Tensor:
    """The positions a training step scores: `start` (every position from it on) or, when
    `count` is smaller than the number of positions some sequence is scored at, `count` of
    those drawn at random, in order. The mean KL over them estimates the mean over all, and
    the last layer's queries, MLP and unembedding, most of a step's work on long answers (a
    sort's 150 numbers), run only there."""
    if not count:                        # the default: nothing to draw on the hot path
        return start
    answers = batch.scored.any(0).nonzero()[:, 0]
    if len(answers) <= count:
        return start
    chosen = torch.randperm(len(answers), generator=generator)[:count]
    return answers[chosen.sort().values].to(batch.tokens.device)


def loss_kl(target: torch.Tensor, logits: torch.Tensor, batch, mode: str,
            start: int | torch.Tensor = 0) -> torch.Tensor:
    """Mean KL(original || circuit) over the scored positions; `logits` are at the positions
    `start` names (circuit.rows)."""
    return kl_divergence(rows(target, start), logits, mode)[rows(batch.scored, start)].mean()


@torch.no_grad()
def match(circuit: Circuit, masks: Masks, data: Data) -> dict[str, float]:
    """Per selection bucket: the fraction of sequences whose prediction equals the original's
    at every scored position."""
    out = {}
    masks = masks.to(circuit.W_E.device)
    for name, pairs in data.selection.items():
        same = total = 0
        for batch, target in pairs:
            start = answers_from(batch)
            logits = circuit(batch.tokens, batch.positions, masks, start)
            target = target[:, start:]
            if data.mode == "lm":
                agree = logits.argmax(-1) == target.argmax(-1)
            else:
                agree = ((logits > 0) == (target > 0)).all(-1)
            same += int((agree | ~batch.scored[:, start:]).all(-1).sum())
            total += batch.tokens.shape[0]
        out[name] = same / max(total, 1)
    return out


def run_stage(circuit: Circuit, layout: Layout, stage: Stage, data: Data, lam: float,
              steps: int, settings: PruneSettings, seed: int, progress=None) -> torch.Tensor:
    """Train the stage's masks (and the constants and scales); the hard flat masks."""
    G = stage.n_groups
    if G == 0:
        return stage.fixed.clone()
    generator = torch.Generator().manual_seed(seed)
    drawn = torch.Generator().manual_seed(seed + 7919)     # the scored positions' own stream
    device = circuit.W_E.device
    theta = torch.nn.Parameter(torch.full((G,), settings.init_logit))
    scales = [p for n, p in circuit.named_parameters() if n.endswith("log_scale")
              and p.requires_grad]
    constants = [circuit.ablation, circuit.q_offset, circuit.mlp_offset, circuit.out_offset]
    optimiser = torch.optim.Adam([
        {"params": [theta], "lr": settings.lr_mask},
        {"params": scales, "lr": settings.lr_scale},
        {"params": constants, "lr": settings.lr_constants}])
    last, stable = None, 0
    for step in range(steps):
        i = step % len(data.batches)
        batch, target = data.batches[i], data.targets[i]
        # the masks are drawn on the CPU (the same draws on every device), used on the model's
        group = sample_masks(theta, batch.tokens.shape[0], generator)
        masks = layout.masks(stage.expand(group).to(device), stage.products)
        start = scored_rows(batch, answers_from(batch), settings.positions, drawn)
        logits = circuit(batch.tokens, batch.positions, masks, start)
        kl = loss_kl(target, logits, batch, data.mode, start)
        loss = kl + lam * torch.sigmoid(theta).sum().to(device)
        optimiser.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_([theta], 5.0)
        optimiser.step()
        if progress and (step % 25 == 0 or step == steps - 1):
            progress(stage.name, step + 1, steps, float(kl.detach()),
                     int((theta.detach() > 0).sum()), G)
        if settings.patience:
            hard = theta.detach() > 0
            stable = stable + 1 if last is not None and torch.equal(hard, last) else 0
            last = hard
            if step + 1 >= settings.min_steps and stable >= settings.patience:
                if progress:                  # the stage is done: its last line says where
                    progress(stage.name, step + 1, step + 1, float(kl.detach()),
                             int(hard.sum()), G)
                break
    hard = (theta.detach() > 0).float()[None]
    return stage.expand(hard)[0]


@frozen
class StageResult:
    name: str
    edges: int
    match: dict
    seconds: float


@frozen
class PruneResult:
    lam: float
    seed: int
    flat: torch.Tensor           # the final hard masks
    stages: list                 # StageResult per stage
    state: dict                  # the circuit's learned tensors (scales, ablations, offsets)


def prune(original, linear, task, lam: float, settings: PruneSettings = PruneSettings(),
          seed: int = 0, progress=None, data: Data | None = None) -> tuple[Circuit, PruneResult]:
    """The three stages at sparsity weight λ, starting from `linear` (the model under LLN-A, or
    the model itself without LayerNorm) and judged against `original`; the trained circuit
    and its hard masks. It computes on the models' device (`linear` and `original` on the
    same one); the masks and the result are on the CPU."""
    torch.manual_seed(seed)
    circuit = Circuit(linear).to(linear.embed.W_E.device)
    layout = Layout(circuit.graph)
    data = data or Data(original, task, settings, seed)
    flat = layout.flatten({k: layout.part(layout.valid.float(), k) for k in KINDS})
    results = []
    builders = (stage_components, stage_paths, stage_products)
    for index, (build, steps) in enumerate(zip(builders, settings.steps)):
        start = time.perf_counter()
        stage = build(layout) if index == 0 else build(layout, flat)
        flat = run_stage(circuit, layout, stage, data, lam, steps, settings, seed + index,
                         progress)
        if not stage.products:
            flat = with_products(layout, flat)
        kept = kept_edges(layout, flat, stage.products)
        results.append(StageResult(stage.name, len(kept),
                                   match(circuit, layout.masks(flat, True), data),
                                   round(time.perf_counter() - start, 2)))
    state = {n: p.detach().cpu().clone() for n, p in circuit.named_parameters()}
    return circuit, PruneResult(lam, seed, flat, results, state)
