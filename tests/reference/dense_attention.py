"""A dense float64 masked-softmax attention and a packed-buffer builder: the tests' independent attention reference."""
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
