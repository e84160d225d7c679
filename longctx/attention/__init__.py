"""Exact context-parallel attention over packed variable-length documents.

    out = context_parallel_attention(q, k, v, cu_seqlens, kind="ring", group=group)

q `[local_tokens, Hq, D]`, k/v `[local_tokens, Hkv, D]` are this rank's zigzag
shard (`ZigzagSharding(cu_seqlens, group_size).shard(x, group_rank)`) of a
packed batch whose global document boundaries are `cu_seqlens` (`[docs + 1]`,
starting at 0, strictly increasing, the same on every rank of `group`: checked).
Attention is causal inside each document and never crosses documents; GQA
needs Hq % Hkv == 0. The result `[local_tokens, Hq, D]` has q's dtype and
autograd flows to q, k and v. Every rank of `group` must make the same call.
`group` is a ProcessGroup (all its ranks) or a `RankGroup` (some ranks of an
existing group, e.g. of the world: no process group of their own is needed,
since attention talks only point to point; see `rank_group.py`).

kind:
  "local"   a group of one (group None or of size 1);
  "ring"    K/V blocks passed around the group (`ring.py`);
  "ulysses" all-to-all between sequence and heads over the group (`ulysses.py`);
  "hybrid"  Ulysses (degree `ulysses_degree`, a divisor of the group size) x ring
            (`hybrid.py`); by default the largest proper divisor of the group
            size that is <= Hkv, else the smallest proper divisor, else 1.
softmax_scale defaults to 1/sqrt(D). backend names a local kernel from
`longctx.attention.backends` ("auto": on CUDA the fastest available of
flash_attn, sdpa, triton for fp16/bf16 and triton for fp32; else reference).

Bad input raises `AttentionInputError` (a ValueError) on every rank of the group
before any attention communication.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.distributed as dist

from longctx.attention.backends import BackendUnavailableError, available_backends, get_backend
from longctx.attention.comm import TrafficCounter
from longctx.attention.hybrid import HybridAttention, HybridPlan
from longctx.attention.rank_group import RankGroup, as_rank_group
from longctx.attention.reference import backward as reference_backward, forward as reference_forward
from longctx.attention.sharding import ZigzagSharding
from longctx.attention.validation import (
    KINDS,
    AttentionInputError,
    check_kind,
    check_kind_name,
    check_local_tokens,
    check_tensors,
)
from longctx.attention.validation import agree_across_group

__all__ = [
    "KINDS",
    "AttentionInputError",
    "BackendUnavailableError",
    "HybridPlan",
    "RankGroup",
    "TrafficCounter",
    "ZigzagSharding",
    "available_backends",
    "context_parallel_attention",
    "default_ulysses_degree",
    "plan_attention",
    "reference_backward",
    "reference_forward",
    "run_planned",
]


def default_ulysses_degree(group_size: int, num_kv_heads: int) -> int:
    """Hybrid's default Ulysses degree (see the module docstring)."""
    proper = [d for d in range(2, group_size) if group_size % d == 0]
    fitting = [d for d in proper if d <= num_kv_heads]
    if fitting:
        return max(fitting)
    return min(proper) if proper else 1


def _ulysses_degree(kind: str, group_size: int, requested: int | None, num_kv_heads: int) -> int:
    implied = {"local": 1, "ring": 1, "ulysses": group_size}.get(kind)
    if implied is None:
        return requested if requested is not None else default_ulysses_degree(group_size, num_kv_heads)
    if requested is not None and requested != implied:
        raise AttentionInputError(
            f"ulysses_degree={requested} contradicts kind={kind!r} on a group of {group_size} "
            f"(which implies {implied}); leave it None or use kind='hybrid'"
        )
    return implied


def plan_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu_seqlens: torch.Tensor | Sequence[int], *,
    kind: str = "local", group: dist.ProcessGroup | RankGroup | None = None, ulysses_degree: int | None = None,
    softmax_scale: float | None = None, backend: str = "auto", traffic: TrafficCounter | None = None,
) -> HybridPlan:
    """Validate one call of `context_parallel_attention` and build its plan.

    On a group of more than one rank the only communication is one tiny
    all_gather (`validation.agree_across_group`) so that bad input on any rank
    raises on every rank instead of leaving peers blocked; a plan can be reused
    for every layer of a step (`run_planned`).

    `traffic`, when given, accumulates the bytes this rank sends.
    """
    check_kind_name(kind)
    if group is None and kind != "local":
        if not dist.is_initialized():
            raise AttentionInputError(f"kind={kind!r} needs a process group; torch.distributed is not initialized")
        group = dist.group.WORLD
    group = as_rank_group(group)
    size = 1 if group is None else group.size
    rank = 0 if group is None else group.index
    error, sharding, cu = None, None, None
    try:
        check_kind(kind, size, ulysses_degree)
        check_tensors(q, k, v)
        sharding = ZigzagSharding(cu_seqlens, size)
        cu = sharding.cu_seqlens
        check_local_tokens(q.shape[0], sharding.num_tokens(rank), rank, size, sharding.total_tokens)
        degree = _ulysses_degree(kind, size, ulysses_degree, k.shape[1])
        scale = q.shape[2] ** -0.5 if softmax_scale is None else float(softmax_scale)
        if not scale > 0:
            raise AttentionInputError(f"softmax_scale={softmax_scale} must be a positive number (or None)")
        kernel = get_backend(backend, q.device, q.dtype)
    except (AttentionInputError, BackendUnavailableError) as exc:
        error = exc
    if size > 1:
        agree_across_group(group, q.device, error, cu)
    elif error is not None:
        raise error
    return HybridPlan(
        sharding=sharding, rank=rank, ulysses_degree=degree, num_q_heads=q.shape[1], num_kv_heads=k.shape[1],
        backend=kernel, softmax_scale=scale, group=group, traffic=traffic,
    )


def context_parallel_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu_seqlens: torch.Tensor | Sequence[int], *,
    kind: str = "local", group: dist.ProcessGroup | RankGroup | None = None, ulysses_degree: int | None = None,
    softmax_scale: float | None = None, backend: str = "auto",
) -> torch.Tensor:
    """This rank's attention output `[local_tokens, Hq, D]`; see the module docstring."""
    plan = plan_attention(
        q, k, v, cu_seqlens, kind=kind, group=group, ulysses_degree=ulysses_degree,
        softmax_scale=softmax_scale, backend=backend,
    )
    return run_planned(q, k, v, plan)


def run_planned(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, plan: HybridPlan) -> torch.Tensor:
    """Run attention with a plan from `plan_attention` (for callers that reuse or inspect plans)."""
    return HybridAttention.apply(q, k, v, plan)
