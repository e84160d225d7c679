"""Gradient synchronisation over the whole world: one flat all-reduce (SUM).

Why not DDP or FSDP2: with a dynamic plan, ranks run different numbers of
forwards per step (one rank may run three micro-batches in two waves, another
one, another none), in groups that change every step. DDP's reducer assumes
every rank runs the same forward/backward sequence and fires bucket
all-reduces from autograd hooks, so it would hang or mis-scale; FSDP2 shards
parameters and all-gathers them inside each forward, a collective over the
whole world that idle ranks would not join. Here the loss is already
normalised by the step's global target count, so the exact gradient is the
plain SUM of the ranks' accumulated gradients: one all-reduce after all waves,
which every rank (idle or not) joins exactly once per step. Parameters stay
replicated (the model states of the tiny-to-small CPU runs fit everywhere);
sharding the optimizer state is future work for the 8B/70B shapes.
"""
from __future__ import annotations

from typing import Iterable

import torch
import torch.distributed as dist
from torch import nn


def all_reduce_gradients(parameters: Iterable[nn.Parameter], group: dist.ProcessGroup | None = None) -> None:
    """Replace every ``p.grad`` by its sum over `group` (the world by default); missing grads count as zero."""
    parameters = [p for p in parameters if p.requires_grad]
    for p in parameters:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    flat = torch.cat([p.grad.reshape(-1) for p in parameters])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM, group=group)
    offset = 0
    for p in parameters:
        n = p.numel()
        p.grad.copy_(flat[offset:offset + n].view_as(p.grad))
        offset += n


def clip_gradients(parameters: Iterable[nn.Parameter], max_norm: float) -> float:
    """Clip the global L2 norm of the (already synchronised) gradients to `max_norm` (0: no clipping).

    Returns the norm before clipping. Every rank holds the same gradients, so
    every rank computes the same norm and the same scale.
    """
    limit = max_norm if max_norm > 0 else float("inf")
    return float(torch.nn.utils.clip_grad_norm_(list(parameters), limit))
