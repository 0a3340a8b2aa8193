"""The linear-LayerNorm assumption (LLN-A): LayerNorm with one constant scale per LayerNorm.

LayerNorm(x) = (x - mean x) / sqrt(var x + eps) * w + b divides by a per-position scale, the
one non-linear step between a path's write to the residual stream and a reader. LLN-A replaces
sqrt(var x + eps) by a constant sqrt(E[var x] + eps), the variance averaged over task data, which
makes every reader a linear function of the residual stream, so the model splits into paths
(docs/extractor.md, LLN-A). The paper learns these constants during pruning; here they are
estimated once and kept, so the full program is an exact rewrite of the linearised model.

How far LLN-A changes the model is measured, not assumed: `faithfulness` reports, per length
bucket, the fraction of sequences on which the linearised model makes the same prediction as
the original at every scored position, and the mean KL divergence from the original.
"""

from __future__ import annotations

import attrs
import numpy as np
import torch

from compiler.transformer import Transformer
from extractor.tasks.base import Task
from extractor.tasks.batches import collate, length_sorted_chunks
from extractor.tasks.evaluate import MAX_TOKENS, evaluation_sets


def layer_norms(model) -> dict[str, torch.nn.Module]:
    """The model's LayerNorms by name: blocks.L.ln1, blocks.L.ln2, ln_final."""
    found = {}
    for i, block in enumerate(model.blocks):
        for which in ("ln1", "ln2"):
            if getattr(block, which) is not None:
                found[f"blocks.{i}.{which}"] = getattr(block, which)
    if model.ln_final is not None:
        found["ln_final"] = model.ln_final
    return found


@torch.inference_mode()
def estimate_scales(model, task: Task, batches: int = 10, batch_size: int = 64,
                    seed: int = 0) -> dict[str, float]:
    """{LayerNorm name: sqrt(mean variance + eps)} over `batches` × `batch_size` sequences of
    the task's whole length range (0 to max_length, random position offsets, as the paper's
    estimate), counting every position except <pad> and <eos>."""
    norms = layer_norms(model)
    if not norms:
        return {}
    rng = np.random.default_rng([seed, 7919])
    sums = {name: 0.0 for name in norms}
    count = 0
    vocab = task.vocab
    model.eval()
    for _ in range(batches):
        examples = [task.sample(rng, 0, task.max_length, offset=True) for _ in range(batch_size)]
        batch = collate(examples, vocab.pad, task.mode)
        _, cache = model(batch.tokens, position_ids=batch.positions, return_cache=True)
        keep = (batch.tokens != vocab.pad) & (batch.tokens != vocab.eos)       # (B, T)
        count += int(keep.sum())
        for name, norm in norms.items():
            scale = cache[name + ".hook_scale"][..., 0]                         # (B, T)
            variance = scale.double() ** 2 - norm.eps
            sums[name] += float(variance[keep].sum())
    return {name: float(np.sqrt(sums[name] / max(count, 1) + norms[name].eps)) for name in norms}


def fit_scales(model, task: Task, scales: dict[str, float], steps: int = 100,
               batch_size: int = 32, lr: float = 0.05, seed: int = 0,
               progress=None) -> dict[str, float]:
    """Scales refined by gradient descent on KL(original || linearised) at the scored
    positions of fresh task sequences (the paper learns them the same way, during pruning).

    Starting from the estimated scales, this matters where the variance differs a lot between
    positions (<bos> against the rest): one average can then be far from what every reader
    needs. The data are drawn like `estimate_scales`'s, from their own stream, so the
    evaluation sets of `faithfulness` are never trained on.
    """
    if not scales:
        return {}
    linear = linearised(model, scales)
    for p in linear.parameters():
        p.requires_grad_(False)
    names = sorted(layer_norms(linear))
    logs = torch.nn.Parameter(torch.tensor([np.log(scales[n]) for n in names],
                                           dtype=torch.float64))
    optimiser = torch.optim.Adam([logs], lr=lr)
    rng = np.random.default_rng([seed, 104729])
    best, best_loss = dict(scales), float("inf")
    for step in range(steps):
        examples = [task.sample(rng, 0, task.max_length, offset=True) for _ in range(batch_size)]
        batch = collate(examples, task.vocab.pad, task.mode)
        with torch.no_grad():
            target = model(batch.tokens, position_ids=batch.positions).double()
        trial = {name: logs[i].exp() for i, name in enumerate(names)}
        out = linear(batch.tokens, position_ids=batch.positions, ln_scales=trial).double()
        loss = kl_divergence(target, out, task.mode)[batch.scored].mean()
        value = float(loss.detach())
        if value < best_loss:         # the scales before this step gave this loss
            best_loss = value
            best = {n: float(np.exp(v)) for n, v in zip(names, logs.detach().numpy())}
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if progress:
            progress(f"fitting LayerNorm scales {step + 1}/{steps}, KL {value:.2e}")
    return best


def kl_divergence(a: torch.Tensor, b: torch.Tensor, mode: str) -> torch.Tensor:
    """KL(original || other) per position: of the softmaxes ("lm") or summed over the
    vocabulary's Bernoulli variables ("bce")."""
    if mode == "lm":
        log_p, log_q = a.log_softmax(-1), b.log_softmax(-1)
        return (log_p.exp() * (log_p - log_q)).sum(-1)
    return _bernoulli_kl(a, b).sum(-1)


def linearised(model, scales: dict[str, float]):
    """A copy of `model` whose LayerNorms divide by the given constants (LLN-A)."""
    norms = layer_norms(model)
    missing = sorted(set(norms) - set(scales))
    if missing:
        raise ValueError(f"no LLN-A scale for {', '.join(missing)}")
    config = attrs.evolve(model.config, ln_scales={name: scales[name] for name in norms})
    with torch.device("meta"):          # no initialisation: the weights are copied below
        linear = Transformer(config)
    linear.load_state_dict({name: t.clone() for name, t in model.state_dict().items()},
                           assign=True)
    return linear.eval()


@torch.inference_mode()
def faithfulness(original, linear, task: Task, buckets=None, n: int = 2000,
                 seed: int = 0, reference: dict | None = None) -> dict[str, dict[str, float]]:
    """Per bucket: `match`, the fraction of sequences on which `linear` predicts what
    `original` predicts at every scored position (argmax for next-token tasks, the sign of
    every entry for next-token sets), and `kl`, the mean KL(original || linear) per scored
    position (summed over the vocabulary's Bernoulli variables for next-token sets).
    `reference`: a dict shared by calls with the same original, task, buckets, n and seed,
    which keeps the original's logits after the first (a LayerNorm diagnosis compares six
    variants with one original: on sort, half its time was the original again)."""
    sets = evaluation_sets(task, buckets or task.test_buckets, n, seed,
                           original.config.n_positions)
    out = {}
    for name, examples in sets.items():
        same, kl_sum, positions = 0, 0.0, 0
        for i, chunk in enumerate(length_sorted_chunks(examples, MAX_TOKENS)):
            batch = collate(chunk, task.vocab.pad, task.mode)
            if reference is not None and (name, i) in reference:
                a = reference[name, i].double()
            else:
                a = original(batch.tokens, position_ids=batch.positions)
                if reference is not None:
                    reference[name, i] = a
                a = a.double()
            b = linear(batch.tokens, position_ids=batch.positions).double()
            scored = batch.scored
            if task.mode == "lm":
                agree = a.argmax(-1) == b.argmax(-1)
            else:
                agree = ((a > 0) == (b > 0)).all(-1)
            kl = kl_divergence(a, b, task.mode)
            same += int((agree | ~scored).all(-1).sum())
            kl_sum += float(kl[scored].sum())
            positions += int(scored.sum())
        out[name] = {"match": same / max(len(examples), 1),
                     "kl": kl_sum / max(positions, 1)}
    return out


def _bernoulli_kl(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """KL(Bernoulli(sigmoid a) || Bernoulli(sigmoid b)) elementwise, stable for large logits."""
    p = torch.sigmoid(a)
    log_p, log_1p = torch.nn.functional.logsigmoid(a), torch.nn.functional.logsigmoid(-a)
    log_q, log_1q = torch.nn.functional.logsigmoid(b), torch.nn.functional.logsigmoid(-b)
    return p * (log_p - log_q) + (1 - p) * (log_1p - log_1q)

