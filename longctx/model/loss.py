"""Next-token targets of packed documents and the step-normalised cross-entropy.

Every sequence of length L predicts tokens 1..L-1 from positions 0..L-2; its
last position has no target (IGNORE). The loss of a step is the SUM of the
token cross-entropies over all its targets divided by the number of targets in
the WHOLE step, so the per-rank losses add up to the single-process loss and
per-rank gradients add up to the single-process gradient, whatever the plan.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch.nn import functional as F

from longctx.model.layers import at_least_fp32

#: target id of positions that predict nothing
IGNORE = -100


def next_token_targets(sequences: Sequence[torch.Tensor]) -> torch.Tensor:
    """Targets `[sum L]` (int64) of the packed `sequences`: the next token, IGNORE at each last position."""
    parts = []
    for tokens in sequences:
        target = torch.full((tokens.numel(),), IGNORE, dtype=torch.int64)
        target[:-1] = tokens[1:].to(torch.int64)
        parts.append(target)
    return torch.cat(parts) if parts else torch.empty(0, dtype=torch.int64)


def count_targets(lengths: Sequence[int]) -> int:
    """Number of target tokens of sequences of `lengths` tokens: ``sum(L - 1)``."""
    return sum(max(int(length) - 1, 0) for length in lengths)


def step_loss(logits: torch.Tensor, targets: torch.Tensor, step_targets: int) -> torch.Tensor:
    """``sum CE(logits, targets) / step_targets`` over this shard's rows (`[n, vocab]`, `[n]`)."""
    if step_targets < 1:
        raise ValueError(f"step_loss: step_targets={step_targets}; a step needs at least one target token")
    total = F.cross_entropy(at_least_fp32(logits), targets, ignore_index=IGNORE, reduction="sum")
    return total / step_targets
