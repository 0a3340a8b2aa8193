"""Training small GPT-2 models on a task with the paper's recipe (docs/extractor.md, Training).

AdamW (β 0.9/0.999, ε 1e-8, weight decay 0.01 on weights but not on biases or LayerNorm),
gradient clipping at 1.0, a linear decay of the learning rate to 0 over `steps`, batches of 64
fresh examples with random position offsets, the unembedding tied to the embedding, and GPT-2's
initialisation. Every `eval_every` steps the in-distribution bucket is evaluated; training stops
as soon as it is entirely right. The result is saved as a Hugging Face GPT-2 checkpoint with
the task's metadata (task.json) and accuracies (task.json and the paper's acc.txt).

Dropout, when asked for, is GPT-2's (the model's `dropout`, active in training mode only): on
the embeddings, on the attention probabilities and on each attention and MLP output. It
matters: unique_copy 2l1h64d with dropout 0.1 length-generalised only with the
attention-probability dropout too.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import torch
from attrs import asdict, field, frozen, validators

from compiler.transformer import Transformer, TransformerConfig
from extractor.tasks.base import Task
from extractor.tasks.batches import collate, loss
from extractor.tasks.evaluate import Bucket, evaluate, progress_bar
from rasp_ir.files import atomic_write_text

_positive = [validators.instance_of(int), validators.gt(0)]


@frozen(kw_only=True)
class TrainConfig:
    """The architecture and recipe of one training run (defaults: the paper's)."""
    layers: int = field(validator=_positive)
    heads: int = field(validator=_positive)
    d_model: int = field(validator=_positive)
    lr: float = field(default=1e-3, converter=float, validator=validators.gt(0))
    dropout: float = field(default=0.0, converter=float,
                           validator=[validators.ge(0), validators.lt(1)])
    steps: int = field(default=30_000, validator=_positive)
    batch_size: int = field(default=64, validator=_positive)
    seed: int = field(default=0, validator=[validators.instance_of(int), validators.ge(0)])
    eval_every: int = field(default=3_000, validator=_positive)
    eval_n: int = field(default=2_000, validator=_positive)
    weight_decay: float = field(default=0.01, converter=float)
    grad_clip: float = field(default=1.0, converter=float)

    @property
    def arch_name(self) -> str:
        """The paper's architecture tag, e.g. 1l1h16d3lr01drop (lr 1e-3, dropout 0.1)."""
        exponent = -math.log10(self.lr)
        lr = str(round(exponent)) if math.isclose(exponent, round(exponent)) else f"{self.lr:g}"
        return f"{self.layers}l{self.heads}h{self.d_model}d{lr}lr{round(self.dropout * 10):02d}drop"


@frozen
class TrainResult:
    model: Transformer
    steps: int                      # optimiser steps taken
    seconds: float                  # wall time of the training loop (evaluations included)
    stopped_early: bool             # in-distribution accuracy reached 1.0
    accuracy: dict[str, float]      # per bucket, after training
    history: list[dict]             # {"step", "loss", "in_distribution"} at each evaluation


def build_model(task: Task, config: TrainConfig) -> Transformer:
    """A GPT-2-style model for the task, initialised as Hugging Face initialises GPT-2, with
    the unembedding tied to the embedding and the run's dropout."""
    if config.d_model % config.heads:
        raise ValueError(f"d_model {config.d_model} is not divisible by heads {config.heads}")
    model = Transformer(TransformerConfig(
        vocab_size=len(task.vocab), n_positions=task.n_positions, d_model=config.d_model,
        n_layers=config.layers, n_heads=config.heads, dropout=config.dropout,
        tie_embeddings=True))
    # Construction drew a first initialisation from the global random stream (redrawn below
    # from the seed's own generator), and the dropout masks follow it in that stream. A model
    # whose W_U was a Parameter of its own drew W_U there too: drawing as many numbers keeps
    # each seed's dropout masks, and so its trained weights, what they have always been.
    torch.empty(config.d_model, len(task.vocab)).normal_(0.0, 0.02)
    generator = torch.Generator().manual_seed(config.seed)
    model.reset_parameters(generator=generator)
    with torch.no_grad():
        # GPT-2 shrinks the residual-stream output projections by 1/sqrt(2 * layers).
        for block in model.blocks:
            block.attn.W_O.mul_((2 * config.layers) ** -0.5)
            block.mlp.W_out.mul_((2 * config.layers) ** -0.5)
    return model


def _optimizer(model: Transformer, config: TrainConfig) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        leaf = name.rsplit(".", 1)[-1]
        # Hugging Face's Trainer exempts biases and LayerNorm parameters from weight decay.
        (no_decay if leaf.startswith("b") or leaf == "w" else decay).append(p)
    return torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}],
                             lr=config.lr, betas=(0.9, 0.999), eps=1e-8)


def train(task: Task, config: TrainConfig, buckets: list[Bucket] | None = None,
          progress=False, threads: int | None = 2) -> TrainResult:
    """Train a model on the task; returns it with its per-bucket accuracy (in eval mode).
    progress: as evaluate's (extractor.tasks.evaluate.progress_bar)."""
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(config.seed)           # dropout masks
    model = build_model(task, config)
    in_distribution = [tuple(task.train_lengths)]
    stream = task.training_stream(config.seed)
    history, step, stopped, start = [], 0, False, time.perf_counter()
    bar = progress_bar(config.steps, "train", enabled=progress, unit="step")
    optimizer = _optimizer(model, config)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: max(0.0, 1 - s / config.steps))
    running = None
    while step < config.steps and not stopped:
        model.train()
        batch = collate([next(stream) for _ in range(config.batch_size)],
                        task.vocab.pad, task.mode)
        value = loss(model(batch.tokens, position_ids=batch.positions), batch)
        optimizer.zero_grad(set_to_none=True)
        value.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        schedule.step()
        step += 1
        running = value.item() if running is None else 0.98 * running + 0.02 * value.item()
        bar.update(1)
        if step % config.eval_every == 0 or step == config.steps:
            acc = evaluate(model, task, in_distribution, config.eval_n, config.seed)
            score = next(iter(acc.values()))
            history.append({"step": step, "loss": running, "in_distribution": score})
            bar.set_postfix(loss=f"{running:.4f}", acc=f"{score:.4f}")
            stopped = score == 1.0
    bar.close()
    seconds = time.perf_counter() - start
    model.eval()
    accuracy = evaluate(model, task, buckets or task.test_buckets, config.eval_n, config.seed,
                        progress=progress)
    return TrainResult(model, step, seconds, stopped, accuracy, history)


def save_trained(result: TrainResult, task: Task, config: TrainConfig, directory: Path) -> Path:
    """Write the checkpoint (config.json + model.safetensors, loadable by
    transformers.GPT2LMHeadModel), task.json, the paper's acc.txt and the tokenizer files
    (tokenizer.json, special_tokens_map.json, tokenizer_config.json) to `directory`."""
    from compiler.checkpoint import save_hf_gpt2
    from extractor.tasks.checkpoint import write_task_file
    directory = Path(directory)
    save_hf_gpt2(result.model, directory)
    config_path = directory / "config.json"
    hf = json.loads(config_path.read_text(encoding="utf-8"))
    v = task.vocab
    # As the paper's checkpoints do: the special ids, and dropout as it was in training.
    hf.update(bos_token_id=v.bos, eos_token_id=v.eos, pad_token_id=v.pad,
              attn_pdrop=config.dropout, embd_pdrop=config.dropout, resid_pdrop=config.dropout)
    from rasp_ir.jsondata import dumps
    atomic_write_text(config_path, dumps(hf, indent=2) + "\n")
    record = {"training": {**asdict(config), "arch": config.arch_name,
                           "steps_run": result.steps, "seconds": round(result.seconds, 2),
                           "stopped_early": result.stopped_early,
                           "history": result.history},
              "accuracy": result.accuracy}
    write_task_file(directory, task, record)
    atomic_write_text(directory / "acc.txt", acc_line(result, config) + "\n")
    write_task_tokenizer(directory, task.vocab, result.model.config.n_positions)
    return directory


def write_task_tokenizer(directory: Path, vocab, max_length: int | None = None) -> None:
    """The tokenizer files of a task's vocabulary (compiler/tokenizer.py)."""
    from compiler.tokenizer import write_tokenizer
    from extractor.tasks.vocabulary import BOS, EOS, PAD, SEP
    write_tokenizer(directory, list(vocab.tokens), {"bos_token": BOS, "sep_token": SEP,
                                                    "eos_token": EOS, "pad_token": PAD},
                    max_length)


def acc_line(result: TrainResult, config: TrainConfig) -> str:
    """The paper's acc.txt line: arch, how training ended, eval_lenLO-HI_acc per bucket."""
    ended = (f"early stop {result.steps / config.steps:g}" if result.stopped_early
             else "reach max step")
    accs = "\t\t".join(f"eval_len{name}_acc: {value}" for name, value in result.accuracy.items())
    return f"{config.arch_name}\t\t {ended}\t\t{accs}"
