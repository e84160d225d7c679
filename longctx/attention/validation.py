"""Input checks for context-parallel attention, run before any communication.

Every check raises `AttentionInputError` (a `ValueError`) whose message names
the field, the offending value and the fix. Nothing here communicates, so a
bad call fails on the rank that made it instead of hanging its peers.
"""
from __future__ import annotations

from typing import Sequence

import torch

#: the kinds of attention the public entry point accepts
KINDS = ("local", "ring", "ulysses", "hybrid")


class AttentionInputError(ValueError):
    """Bad input to context-parallel attention (shapes, dtypes, boundaries, group)."""


def check_cu_seqlens(cu_seqlens: torch.Tensor | Sequence[int]) -> torch.Tensor:
    """Return `cu_seqlens` as a CPU int64 tensor `[docs + 1]` after checking it.

    It must be 1-D, start at 0 and be strictly increasing (every document has
    at least one token).
    """
    cu = torch.as_tensor(cu_seqlens)
    if cu.dim() != 1 or cu.numel() < 2:
        raise AttentionInputError(
            f"cu_seqlens must be a 1-D list [0, end_of_doc_0, ..., total_tokens] with at least 2 entries; "
            f"got shape {tuple(cu.shape)}"
        )
    if cu.is_floating_point() or cu.is_complex() or cu.dtype == torch.bool:
        raise AttentionInputError(f"cu_seqlens must hold integers; got dtype {cu.dtype}")
    cu = cu.to(device="cpu", dtype=torch.int64)
    if int(cu[0]) != 0:
        raise AttentionInputError(f"cu_seqlens must start at 0; got cu_seqlens[0]={int(cu[0])}")
    steps = cu[1:] - cu[:-1]
    if bool((steps <= 0).any()):
        bad = int(torch.nonzero(steps <= 0)[0, 0])
        raise AttentionInputError(
            f"cu_seqlens must be strictly increasing (every document needs >= 1 token); "
            f"got cu_seqlens[{bad}]={int(cu[bad])} then cu_seqlens[{bad + 1}]={int(cu[bad + 1])}; "
            f"drop empty documents before packing"
        )
    return cu


def check_kind_name(kind: str) -> None:
    """Check that `kind` is one of `KINDS`."""
    if kind not in KINDS:
        raise AttentionInputError(f"kind={kind!r} is unknown; choose one of {KINDS}")


def check_kind(kind: str, group_size: int, ulysses_degree: int | None) -> None:
    """Check `kind` against the group size and that `ulysses_degree` divides the group size."""
    check_kind_name(kind)
    if kind == "local" and group_size != 1:
        raise AttentionInputError(
            f"kind='local' needs a group of one rank; got a group of {group_size}; use kind='ring', "
            f"'ulysses' or 'hybrid'"
        )
    if ulysses_degree is not None and (ulysses_degree < 1 or group_size % ulysses_degree):
        raise AttentionInputError(
            f"ulysses_degree={ulysses_degree} must be a positive divisor of the group size {group_size}"
        )


def check_tensors(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
    """Check ranks, head counts, head dims, dtypes and devices of q `[n, Hq, D]`, k/v `[n, Hkv, D]`."""
    for name, t in (("q", q), ("k", k), ("v", v)):
        if t.dim() != 3:
            raise AttentionInputError(f"{name} must be [tokens, heads, head_dim]; got shape {tuple(t.shape)}")
        if not t.is_floating_point():
            raise AttentionInputError(f"{name} must be a floating-point tensor; got dtype {t.dtype}")
    if k.shape != v.shape:
        raise AttentionInputError(f"k and v must have the same shape; got k {tuple(k.shape)}, v {tuple(v.shape)}")
    if not (q.shape[0] == k.shape[0] and q.shape[2] == k.shape[2]):
        raise AttentionInputError(
            f"q {tuple(q.shape)} and k {tuple(k.shape)} must agree on tokens (dim 0) and head_dim (dim 2)"
        )
    hq, hkv = q.shape[1], k.shape[1]
    if hkv == 0 or hq % hkv:
        raise AttentionInputError(
            f"query heads Hq={hq} must be a multiple of kv heads Hkv={hkv} (GQA); pick Hkv dividing Hq"
        )
    if not (q.dtype == k.dtype == v.dtype):
        raise AttentionInputError(
            f"q, k, v must share one dtype; got q {q.dtype}, k {k.dtype}, v {v.dtype}; cast them first"
        )
    if not (q.device == k.device == v.device):
        raise AttentionInputError(
            f"q, k, v must be on one device; got q {q.device}, k {k.device}, v {v.device}"
        )


def check_local_tokens(n_local: int, expected: int, rank: int, group_size: int, total: int) -> None:
    """Check that this rank holds exactly the tokens its zigzag shard should have."""
    if n_local != expected:
        raise AttentionInputError(
            f"q has {n_local} tokens on group rank {rank}, but the zigzag shard of cu_seqlens "
            f"(total {total} tokens) over a group of {group_size} gives this rank {expected}; shard the "
            f"batch with ZigzagSharding(cu_seqlens, {group_size}).shard(x, {rank}) for this group, and check "
            f"that cu_seqlens[-1] is the global token count"
        )


def agree_across_group(group, device: torch.device, error: Exception | None,
                       cu_seqlens: torch.Tensor | None) -> None:
    """Make every rank of `group` (a `RankGroup`) raise when any rank's input is bad (one tiny exchange).

    Some bad input is visible on only some ranks (a wrong `cu_seqlens[-1]` can
    leave one rank's shard size unchanged); raising there alone would leave the
    other ranks blocked in the attention's communication. Every rank shares
    [its own check failed, a fingerprint of cu_seqlens]; a failing rank raises
    its own error, the others an error naming the failing ranks, and a
    `cu_seqlens` that differs between ranks is an error everywhere.
    """
    from longctx.attention.comm import MemberComm

    fingerprint = 0.0
    if cu_seqlens is not None:
        weights = torch.arange(1, cu_seqlens.numel() + 1, dtype=torch.float64)
        fingerprint = float((cu_seqlens.double() * weights).sum()) + cu_seqlens.numel()
    mine = torch.tensor([float(error is not None), fingerprint], dtype=torch.float64, device=device)
    members = MemberComm(group.process_group, list(group.ranks))
    everyone = [t.view(2) for t in members.all_to_all([mine] * group.size, [2] * group.size)]
    if error is not None:
        raise error
    failed = [r for r, t in enumerate(everyone) if t[0] > 0]
    if failed:
        raise AttentionInputError(f"group ranks {failed} rejected their attention input (see their errors)")
    if len({float(t[1]) for t in everyone}) > 1:
        raise AttentionInputError(
            "cu_seqlens differs between the ranks of the group; every rank must pass the same global boundaries"
        )
