"""Gradient synchronisation over the whole world, replicated or sharded.

Why not DDP or FSDP2: with a dynamic plan, ranks run different numbers of
forwards per step (one rank may run three micro-batches in two waves, another
one, another none), in groups that change every step. DDP's reducer assumes
every rank runs the same forward/backward sequence and fires bucket
all-reduces from autograd hooks, so it would hang or mis-scale; FSDP2 shards
parameters and all-gathers them inside each forward, a collective over the
whole world that idle ranks would not join. Here the loss is already
normalised by the step's global target count, so the exact gradient is the
plain SUM of the ranks' accumulated gradients. So during the step gradients
only accumulate locally in ``param.grad`` (no collective, whatever a rank
runs), and after the last wave every rank (idle or not) joins the same fixed
sequence of collectives exactly once:

- ``optimizer_sharding=none``: one flat all-reduce (`all_reduce_gradients`);
  every rank steps AdamW on the whole model.
- ``zero1`` / ``zero2`` (`longctx.runtime.zero`): bucket by bucket (see
  `longctx.runtime.zero_layout`), the fp32 gradients of the bucket's
  parameters, padded to ``shards * chunk`` elements each, are summed over the
  world — zero1 by an all-reduce whose full result replaces ``param.grad``
  (states sharded, gradients not), zero2 by a reduce-scatter after which the
  bucket's ``param.grad`` are freed, so only this rank's fp32 slice of the
  reduced gradient stays (`reduce_gradient_bucket`). Each rank steps AdamW on
  its slices only; then every bucket's updated slices are all-gathered back
  into the replicated parameters (`gather_parameter_bucket`).
"""
from __future__ import annotations

from typing import Iterable, Sequence

import torch
import torch.distributed as dist
from torch import nn

from longctx.runtime.comm_device import comm_device
from longctx.runtime.zero_layout import ParamShard


def all_reduce_gradients(parameters: Iterable[nn.Parameter], group: dist.ProcessGroup | None = None) -> None:
    """Replace every ``p.grad`` by its sum over `group` (the world by default); missing grads count as zero."""
    parameters = [p for p in parameters if p.requires_grad]
    for p in parameters:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    flat = torch.cat([p.grad.reshape(-1) for p in parameters]).to(comm_device(group))
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


def _padded_rows(tensors: Sequence[torch.Tensor | None], bucket: Sequence[ParamShard], shards: int,
                 device: torch.device) -> torch.Tensor:
    """fp32 `[shards, sum chunk]`: row r holds rank r's chunk of every tensor of the bucket (zero padded)."""
    rows = torch.zeros(shards, sum(s.chunk for s in bucket), dtype=torch.float32, device=device)
    offset = 0
    for tensor, shard in zip(tensors, bucket):
        if tensor is not None:
            padded = torch.zeros(shards * shard.chunk, dtype=torch.float32, device=device)
            padded[:shard.numel] = tensor.reshape(-1)
            rows[:, offset:offset + shard.chunk] = padded.view(shards, shard.chunk)
        offset += shard.chunk
    return rows


def _unpad(rows: torch.Tensor, bucket: Sequence[ParamShard]) -> list[torch.Tensor]:
    """The inverse of `_padded_rows`: each tensor's `numel` elements, flat."""
    out, offset = [], 0
    for shard in bucket:
        out.append(rows[:, offset:offset + shard.chunk].reshape(-1)[:shard.numel])
        offset += shard.chunk
    return out


def _my_slices(row: torch.Tensor, bucket: Sequence[ParamShard]) -> list[torch.Tensor]:
    """This rank's `[shard.size]` slice of each parameter out of its `[sum chunk]` row."""
    out, offset = [], 0
    for shard in bucket:
        out.append(row[offset:offset + shard.size])
        offset += shard.chunk
    return out


def reduce_gradient_bucket(grads: Sequence[torch.Tensor | None], bucket: Sequence[ParamShard], shards: int,
                           rank: int, scatter: bool, group: dist.ProcessGroup | None = None
                           ) -> tuple[list[torch.Tensor], list[torch.Tensor] | None]:
    """Sum one bucket's gradients over `group`; missing gradients count as zero.

    Returns (this rank's fp32 `[shard.size]` slice of each summed gradient, and
    the whole summed fp32 gradients `[numel]` when `scatter` is False, else
    None). `rank`: this rank's index among the `shards`. `scatter`: one
    reduce-scatter (each rank receives only its slices);
    otherwise one all-reduce of the padded bucket. `shards` = 1 is a plain
    all-reduce whose slices are the whole gradients.
    """
    device = comm_device(group)
    rows = _padded_rows(grads, bucket, shards, device)
    if scatter and shards > 1:
        mine = torch.empty(rows.shape[1], dtype=rows.dtype, device=device)
        dist.reduce_scatter_single(mine, rows.reshape(-1), op=dist.ReduceOp.SUM, group=group)
        return _my_slices(mine, bucket), None
    dist.all_reduce(rows, op=dist.ReduceOp.SUM, group=group)
    return _my_slices(rows[rank], bucket), _unpad(rows, bucket)


def gather_parameter_bucket(slices: Sequence[torch.Tensor], bucket: Sequence[ParamShard], shards: int,
                            dtype: torch.dtype, device: torch.device, group: dist.ProcessGroup | None = None
                            ) -> list[torch.Tensor]:
    """All-gather every rank's `[shard.size]` parameter slices into whole flat parameters `[numel]` (`dtype`)."""
    width = sum(s.chunk for s in bucket)
    mine = torch.zeros(width, dtype=dtype, device=device)
    offset = 0
    for piece, shard in zip(slices, bucket):
        mine[offset:offset + shard.size] = piece.to(device=device, dtype=dtype, non_blocking=True)
        offset += shard.chunk
    if shards == 1:
        return _unpad(mine.view(1, width), bucket)
    rows = torch.empty(shards * width, dtype=dtype, device=device)
    dist.all_gather_single(rows, mine, group=group)
    return _unpad(rows.view(shards, width), bucket)
