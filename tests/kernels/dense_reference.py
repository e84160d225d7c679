"""A dense float64 masked-softmax attention and packed-buffer builders for the kernel tests."""
from __future__ import annotations

import torch


def dense_attention(q, k, v, q_doc, q_pos, k_doc, k_pos, softmax_scale):
    """Exact (float64) document-masked causal attention with autograd.

    q `[Nq, Hq, D]`, k/v `[Nk, Hkv, D]`; returns (out `[Nq, Hq, D]` float64, lse `[Nq, Hq]`
    float64, -inf and out 0 for a row without visible keys).
    """
    group = q.shape[1] // k.shape[1]
    k64 = k.double().repeat_interleave(group, 1)
    v64 = v.double().repeat_interleave(group, 1)
    scores = torch.einsum("ihd,jhd->hij", q.double(), k64) * softmax_scale
    visible = (q_doc[:, None] == k_doc[None, :]) & (k_pos[None, :] <= q_pos[:, None])
    scores = scores.masked_fill(~visible, float("-inf"))
    lse = torch.logsumexp(scores, -1)
    probs = torch.where(visible, torch.exp(scores - lse[..., None].clamp_min(-1e300)), 0.0)
    return torch.einsum("hij,jhd->ihd", probs, v64), lse.transpose(0, 1)


def packed_docs(lengths: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """doc ids and positions `[sum(lengths)]` (int64) of documents packed back to back."""
    doc = torch.cat([torch.full((n,), i, dtype=torch.int64) for i, n in enumerate(lengths)])
    pos = torch.cat([torch.arange(n, dtype=torch.int64) for n in lengths])
    return doc, pos


def zigzag_chunk_of(pos: torch.Tensor, length: int, chunks: int) -> torch.Tensor:
    """Chunk index of each position when a document of `length` splits into `chunks`
    near-equal chunks, the first ``length % chunks`` one token longer."""
    base, extra = divmod(length, chunks)
    boundary = extra * (base + 1)
    long_chunk = pos // (base + 1)
    short_chunk = extra + (pos - boundary) // max(base, 1)
    return torch.where(pos < boundary, long_chunk, short_chunk)


def zigzag_rank_rows(lengths: list[int], world_size: int, rank: int) -> torch.Tensor:
    """Indices (into the packed buffer) of the rows rank `rank` owns under zigzag sharding."""
    doc, pos = packed_docs(lengths)
    keep = torch.zeros_like(doc, dtype=torch.bool)
    for d, n in enumerate(lengths):
        rows = doc == d
        chunk = zigzag_chunk_of(pos[rows], n, 2 * world_size)
        keep[rows] = (chunk == rank) | (chunk == 2 * world_size - 1 - rank)
    return keep.nonzero().flatten()
