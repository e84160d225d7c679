"""Next-token loss by position bucket: how well the model predicts token p from the p tokens before it.

The standard check of a context extension: the loss of late positions
(4K-16K, 16K-64K, ...) must fall, or at least not rise, once the model can
use the longer context, while the early buckets stay where they were.

Each document runs alone on one process (positions ``0..L-1``, one
``cu_seqlens`` segment), in fp32 or the model's dtype. The target at
position ``p`` (``1 <= p < L``) is token ``p``, predicted from tokens
``0..p-1``; it falls in the bucket ``[edges[i], edges[i+1])`` holding ``p``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

import numpy as np
import torch
from torch.nn import functional as F

#: default bucket starts: 0, 1K, 4K, 16K, 64K, ... (the last bucket is open-ended)
FIRST_EDGE, EDGE_FACTOR = 1024, 4


def bucket_edges(longest: int, first: int = FIRST_EDGE, factor: int = EDGE_FACTOR) -> list[int]:
    """Bucket starts ``[0, first, first*factor, ...]`` up to the last one below ``longest`` positions."""
    edges, start = [0], first
    while start < longest:
        edges.append(start)
        start *= factor
    return edges


def _short(value: int) -> str:
    if value >= 1 << 20 and value % (1 << 20) == 0:
        return f"{value >> 20}M"
    return f"{value >> 10}K" if value >= 1024 and value % 1024 == 0 else str(value)


@dataclass(frozen=True)
class PositionBucket:
    """Targets at positions ``[start, stop)`` (stop None: no end) and their summed loss (nats)."""

    start: int
    stop: int | None
    targets: int
    loss_sum: float

    @property
    def label(self) -> str:
        return f"{_short(self.start)}-{_short(self.stop)}" if self.stop is not None else f"{_short(self.start)}+"

    @property
    def loss(self) -> float:
        """Mean next-token loss (nats per token); NaN for an empty bucket."""
        return self.loss_sum / self.targets if self.targets else math.nan

    def as_dict(self) -> dict:
        return {"bucket": self.label, "start": self.start, "stop": self.stop, "targets": self.targets,
                "loss": None if not self.targets else self.loss,
                "perplexity": None if not self.targets else math.exp(min(self.loss, 700.0))}


@torch.no_grad()
def loss_by_position(model: torch.nn.Module, documents: Iterable[np.ndarray], edges: list[int],
                     max_tokens: int | None = None, device: torch.device | str = "cpu") -> list[PositionBucket]:
    """Summed next-token loss per position bucket over ``documents`` (``int [length]`` token arrays).

    ``edges``: increasing bucket starts beginning at 0 (see :func:`bucket_edges`).
    ``max_tokens``: documents are cut to their first ``max_tokens`` tokens (None: whole).
    """
    if not edges or edges[0] != 0 or any(b <= a for a, b in zip(edges, edges[1:])):
        raise ValueError(f"loss_by_position: edges={edges!r} must be increasing and start at 0")
    if max_tokens is not None and max_tokens < 2:
        raise ValueError(f"loss_by_position: max_tokens={max_tokens!r} must be >= 2 (one target needs two tokens)")
    model.eval()
    boundaries = torch.tensor(edges[1:], dtype=torch.int64)
    targets = torch.zeros(len(edges), dtype=torch.int64)
    sums = torch.zeros(len(edges), dtype=torch.float64)
    for document in documents:
        tokens = torch.as_tensor(np.asarray(document[:max_tokens], dtype=np.int64))
        length = tokens.numel()
        if length < 2:
            continue
        logits = model(tokens.to(device), torch.arange(length, device=device), [0, length])
        losses = F.cross_entropy(logits[:-1].float(), tokens[1:].to(device), reduction="none").double().cpu()
        bucket = torch.bucketize(torch.arange(1, length), boundaries, right=True)
        targets += torch.bincount(bucket, minlength=len(edges))
        sums += torch.bincount(bucket, weights=losses, minlength=len(edges))
    stops = [*edges[1:], None]
    return [PositionBucket(start, stop, int(count), float(total))
            for start, stop, count, total in zip(edges, stops, targets.tolist(), sums.tolist())]


def format_table(buckets: list[PositionBucket]) -> str:
    """A plain-text table: bucket, targets, mean loss, perplexity (empty buckets show '-')."""
    lines = [f"{'position':<12}{'targets':>10}{'loss':>10}{'ppl':>12}"]
    for bucket in buckets:
        if bucket.targets:
            lines.append(f"{bucket.label:<12}{bucket.targets:>10}{bucket.loss:>10.4f}{math.exp(min(bucket.loss, 700.0)):>12.2f}")
        else:
            lines.append(f"{bucket.label:<12}{0:>10}{'-':>10}{'-':>12}")
    return "\n".join(lines)
