"""Examples to padded tensors, and the loss and per-sequence correctness on them.

Padding is on the right with <pad>, and padded positions repeat the last position id (as the
paper's collator does). Causal attention means padding never changes the real positions'
outputs, so no attention mask is needed.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from attrs import frozen

from extractor.tasks.base import IGNORE, Example


@frozen(eq=False)
class Batch:
    tokens: torch.Tensor      # (B, T) ids
    positions: torch.Tensor   # (B, T) position ids
    targets: torch.Tensor     # "lm": (B, T) ids or IGNORE; "bce": (B, T, V) 0/1 floats
    scored: torch.Tensor      # (B, T) bool: the positions whose prediction counts
    mode: str


def collate(examples: list[Example], pad_id: int, mode: str) -> Batch:
    """Pad a list of examples of one task into a Batch."""
    B, T = len(examples), max(len(e.tokens) for e in examples)
    tokens = np.full((B, T), pad_id, dtype=np.int64)
    positions = np.empty((B, T), dtype=np.int64)
    if mode == "lm":
        targets = np.full((B, T), IGNORE, dtype=np.int64)
    else:
        targets = np.zeros((B, T, examples[0].targets.shape[1]), dtype=np.float32)
    for i, e in enumerate(examples):
        n = len(e.tokens)
        tokens[i, :n] = e.tokens
        positions[i, :n] = e.positions
        positions[i, n:] = e.offset + n - 1
        targets[i, :n] = e.targets
    targets = torch.from_numpy(targets)
    scored = targets != IGNORE if mode == "lm" else targets.any(dim=-1)
    return Batch(torch.from_numpy(tokens), torch.from_numpy(positions), targets, scored, mode)


def loss(logits: torch.Tensor, batch: Batch) -> torch.Tensor:
    """The paper's training loss: mean cross-entropy over the scored tokens ("lm"), or mean
    binary cross-entropy over every vocabulary entry of the scored positions ("bce")."""
    if batch.mode == "lm":
        return F.cross_entropy(logits.flatten(0, 1), batch.targets.flatten(),
                               ignore_index=IGNORE)
    rows = batch.scored
    return F.binary_cross_entropy_with_logits(logits[rows], batch.targets[rows])


def correct(logits: torch.Tensor, batch: Batch) -> torch.Tensor:
    """(B,) bool: the paper's per-sequence metric. "lm": the argmax is right at every scored
    position; "bce": every vocabulary entry's sign is right at every scored position."""
    if batch.mode == "lm":
        right = logits.argmax(dim=-1) == batch.targets
    else:
        right = ((logits > 0) == (batch.targets > 0.5)).all(dim=-1)
    return (right | ~batch.scored).all(dim=1)


def length_sorted_chunks(examples: list[Example], max_tokens: int) -> list[list[Example]]:
    """Chunks of examples of similar length with at most max_tokens padded tokens each, so
    evaluation wastes little work on padding."""
    order = sorted(examples, key=lambda e: len(e.tokens))
    chunks, current = [], []
    for e in order:
        if current and (len(current) + 1) * len(e.tokens) > max_tokens:
            chunks.append(current)
            current = []
        current.append(e)
    if current:
        chunks.append(current)
    return chunks
