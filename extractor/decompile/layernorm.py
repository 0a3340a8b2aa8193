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

from extractor.decompile import linearise
from extractor.tasks.base import Task


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
    for name in names:
        if progress:
            progress(f"LLN-A below {threshold}: restoring {name}")
        restored = linearise.faithfulness(
            model, with_real(model, scales, {name}), task, n=n,
            seed=seed)
        alone = linearise.faithfulness(
            model, with_real(model, scales, set(names) - {name}), task, n=n, seed=seed)
        effects[name] = {"restored": _matches(restored), "alone": _matches(alone)}
    culprits = [name for name in names
                if min(effects[name]["alone"].values()) < threshold
                or min(effects[name]["restored"].values()) >= threshold]
    return {"threshold": threshold, "linearised_worst": worst(faithful),
            "sequences_per_bucket": n, "layer_norms": effects, "culprits": culprits}


def describe(diagnosis: dict) -> list[str]:
    """The diagnosis as the command line prints it, one line per LayerNorm."""
    out = [f"  LLN-A loses the model (worst-bucket match {diagnosis['linearised_worst']:.3f} "
           f"< {diagnosis['threshold']}); per LayerNorm, worst-bucket match when restored "
           "alone / linearised alone:"]
    for name, effect in diagnosis["layer_norms"].items():
        mark = "  <- loses it" if name in diagnosis["culprits"] else ""
        out.append(f"    {name:<14} restored {min(effect['restored'].values()):.3f}   "
                   f"linearised alone {min(effect['alone'].values()):.3f}{mark}")
    return out


def _matches(faithful: dict) -> dict[str, float]:
    return {bucket: round(r["match"], 4) for bucket, r in faithful.items()}
