"""Where LLN-A fails: which LayerNorm's constant scale loses the model.

LLN-A (linearise.py) replaces every LayerNorm's per-position scale sqrt(var x + eps) by one
constant. On most of the paper's checkpoints the linearised model keeps the original's
predictions; on some (bce_D3) it keeps almost none, and pruning then has nothing to start
from. `diagnose` says which LayerNorm is at fault, measured two ways per LayerNorm:

- `restored`: every other LayerNorm linearised, this one the true per-position LayerNorm
  (does giving this one back recover the model?);
- `alone`: only this one linearised, every other one true (does this one's constant lose
  the model on its own?).

A LayerNorm is named (`culprits`) when linearising it alone drops some bucket below the
threshold, or when restoring it alone lifts every bucket to it. On bce_D3 each of the three
LayerNorms loses the model on its own (docs/layernorm.md).
"""

from __future__ import annotations

import numpy as np
import torch

from extractor.decompile import linearise
from extractor.tasks.base import Task
from extractor.tasks.batches import collate


def with_real(model, scales: dict[str, float], real) -> object:
    """A linearised copy of `model` (LLN-A with `scales`) in which the LayerNorms named in
    `real` keep their true per-position scale."""
    linear = linearise.linearised(model, scales)
    for name, norm in linearise.layer_norms(linear).items():
        if name in real:
            norm.fixed_scale = None
    return linear


def worst(faithful: dict) -> float:
    """The lowest per-bucket match of a `linearise.faithfulness` result."""
    return min(b["match"] for b in faithful.values())


def diagnose(model, scales: dict[str, float], task: Task, faithful: dict,
             threshold: float = 0.9, n: int = 200, seed: int = 0, progress=None) -> dict:
    """Each LayerNorm's part in LLN-A's loss of faithfulness (`faithful`, the linearised
    model's `linearise.faithfulness`, below `threshold` in some bucket): per LayerNorm, the
    match per bucket when it alone is restored and when it alone is linearised, on `n`
    sequences per bucket; `culprits`, the LayerNorms named (module docstring), in the
    model's order."""
    names = list(linearise.layer_norms(model))
    effects = {}
    reference: dict = {}                  # the model's own logits, computed once
    for name in names:
        if progress:
            progress(f"LLN-A below {threshold}: restoring {name}")
        restored = linearise.faithfulness(
            model, with_real(model, scales, {name}), task, n=n, seed=seed, reference=reference)
        alone = linearise.faithfulness(
            model, with_real(model, scales, set(names) - {name}), task, n=n, seed=seed,
            reference=reference)
        effects[name] = {"restored": _matches(restored), "alone": _matches(alone)}
    depends = depends_on(model, task, seed=seed)
    for name in names:
        effects[name]["scale_depends_on"] = depends[name]
    culprits = [name for name in names
                if min(effects[name]["alone"].values()) < threshold
                or min(effects[name]["restored"].values()) >= threshold]
    return {"threshold": threshold, "linearised_worst": worst(faithful),
            "sequences_per_bucket": n, "layer_norms": effects, "culprits": culprits}


@torch.inference_mode()
def depends_on(model, task: Task, sequences: int = 100, seed: int = 0) -> dict:
    """Per LayerNorm, what its per-position scale depends on: the share of the scale's
    variance explained by its mean over each value of `token`, `position`, `depth` (the
    count of the task's first symbol minus its second so far: a bracket depth, for the
    languages that have one) and of the pairs (token, position), (token, depth), and its
    mean and spread, over `sequences` task sequences (lengths 0 to the maximum, offset 0;
    <pad> and <eos> left out)."""
    rng = np.random.default_rng([seed, 65537])
    examples = [task.sample(rng, 0, task.max_length, offset=False) for _ in range(sequences)]
    batch = collate(examples, task.vocab.pad, task.mode)
    _, cache = model(batch.tokens, position_ids=batch.positions, return_cache=True)
    tokens = batch.tokens.numpy()
    keep = (tokens != task.vocab.pad) & (tokens != task.vocab.eos)
    step = (tokens == 0).astype(int) - (tokens == 1).astype(int)
    quantities = {"token": tokens, "position": batch.positions.numpy(),
                  "depth": np.cumsum(step, axis=1)}
    groups = [("token",), ("position",), ("depth",), ("token", "position"), ("token", "depth")]
    out = {}
    for name in linearise.layer_norms(model):
        scale = cache[name + ".hook_scale"][..., 0].double().numpy()[keep]
        entry = {"mean": round(float(scale.mean()), 4), "std": round(float(scale.std()), 4)}
        for group in groups:
            entry[",".join(group)] = round(_explained(scale, [quantities[q][keep]
                                                              for q in group]), 4)
        out[name] = entry
    return out


def _explained(y: np.ndarray, keys: list) -> float:
    """The share of y's variance explained by its mean per combination of `keys`."""
    _, group = np.unique(np.stack(keys, 1), axis=0, return_inverse=True)
    group = group.ravel()
    means = np.bincount(group, y) / np.bincount(group)
    total = ((y - y.mean()) ** 2).sum()
    return float(1 - ((y - means[group]) ** 2).sum() / total) if total > 0 else 1.0


def describe(diagnosis: dict) -> list[str]:
    """The diagnosis as the command line prints it, one line per LayerNorm."""
    out = [f"  LLN-A loses the model (worst-bucket match {diagnosis['linearised_worst']:.3f} "
           f"< {diagnosis['threshold']}); per LayerNorm, worst-bucket match when restored "
           "alone / linearised alone:"]
    for name, effect in diagnosis["layer_norms"].items():
        mark = "  <- loses it" if name in diagnosis["culprits"] else ""
        out.append(f"    {name:<14} restored {min(effect['restored'].values()):.3f}   "
                   f"linearised alone {min(effect['alone'].values()):.3f}{mark}")
        depends = effect.get("scale_depends_on")
        if depends:
            shares = ", ".join(f"{k} {v:.2f}" for k, v in depends.items()
                               if k not in ("mean", "std"))
            out.append(f"      its scale (mean {depends['mean']:.3g}, spread "
                       f"{depends['std']:.2g}) explained by {shares}")
    return out


def _matches(faithful: dict) -> dict[str, float]:
    return {bucket: round(r["match"], 4) for bucket, r in faithful.items()}
