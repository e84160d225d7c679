"""Pure-torch implementations of the compiled ops in ``csrc/`` (same results, any device).

These are the fallbacks :mod:`longctx.kernels.ops` uses when the compiled
extension is absent, and the specification the compiled ops are tested against.
"""
from __future__ import annotations

import torch


def zigzag_chunk_sizes(cu_seqlens: torch.Tensor, world_size: int) -> torch.Tensor:
    """Size of every zigzag chunk, int64 `[docs, 2 * world_size]`.

    A document of length s splits into C = 2P chunks of ``s // C`` tokens, and its
    ``s % C`` leftover tokens go one each to consecutive chunks in rank round-robin
    order (chunks 0..P-1, then C-1 down to P), continuing where the previous document's
    leftovers stopped, so many short documents still spread evenly over the ranks.
    This is the layout of ``longctx.attention.ZigzagSharding``.
    """
    chunks = 2 * world_size
    lengths = cu_seqlens[1:] - cu_seqlens[:-1]
    base, extra = lengths // chunks, lengths % chunks
    first_slot = (torch.cumsum(extra, 0) - extra) % chunks  # leftovers handed out before each document
    chunk = torch.arange(chunks, device=cu_seqlens.device)
    slot = torch.where(chunk < world_size, chunk, 3 * world_size - 1 - chunk)
    return base[:, None] + ((slot[None, :] - first_slot[:, None]) % chunks < extra[:, None]).to(torch.int64)


def zigzag_shard_index(
    cu_seqlens: torch.Tensor, world_size: int, rank: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Zigzag shard of one rank: (token_index, doc_ids, positions, local cu_seqlens), all int64.

    Rank r owns chunks r and 2P-1-r (sizes from :func:`zigzag_chunk_sizes`) of every
    document, in document-then-position order. cu_seqlens `[docs+1]` int64 (validated by
    the caller); outputs `[n_local]` x3 and `[docs+1]`.
    """
    cu = cu_seqlens.to(torch.int64)
    sizes = zigzag_chunk_sizes(cu, world_size)
    own = [rank, 2 * world_size - 1 - rank]
    seg_size = sizes[:, own]  # [docs, 2]
    seg_begin = (torch.cumsum(sizes, 1) - sizes)[:, own]  # offset of the chunk inside its document
    local_lengths = seg_size.sum(1)
    local_cu = torch.cat([cu.new_zeros(1), torch.cumsum(local_lengths, 0)])

    seg_size, seg_begin = seg_size.flatten(), seg_begin.flatten()
    seg_first_out = torch.cumsum(seg_size, 0) - seg_size
    n_local = int(local_cu[-1])
    within = torch.arange(n_local, device=cu.device) - torch.repeat_interleave(seg_first_out, seg_size)
    positions = torch.repeat_interleave(seg_begin, seg_size) + within
    doc_ids = torch.repeat_interleave(torch.arange(local_lengths.numel(), device=cu.device), local_lengths)
    return cu[doc_ids] + positions, doc_ids, positions, local_cu


def lse_merge_(out: torch.Tensor, lse: torch.Tensor, block_out: torch.Tensor, block_lse: torch.Tensor) -> None:
    """Merge a partial attention block into an fp32 accumulator, in place.

    ``new_lse = logaddexp(lse, block_lse)``; ``out = out*exp(lse-new_lse) + block_out*exp(block_lse-new_lse)``.
    Rows where both lse are -inf keep out and lse -inf. out `[N, H, D]` fp32, lse `[N, H]` fp32,
    block_out `[N, H, D]` any float dtype, block_lse `[N, H]` fp32.
    """
    merged = torch.logaddexp(lse, block_lse)
    empty = torch.isneginf(merged)
    weight_old = torch.where(empty, 0.0, torch.exp(lse - merged))
    weight_new = torch.where(empty, 0.0, torch.exp(block_lse - merged))
    out.mul_(weight_old.unsqueeze(-1)).add_(block_out.float() * weight_new.unsqueeze(-1))
    lse.copy_(merged)


def rope_inverse_frequencies(head_dim: int, base: float, device: torch.device | str = "cpu") -> torch.Tensor:
    """``1 / base ** (2i / head_dim)`` for i < head_dim / 2, fp32 `[head_dim / 2]` (Llama / HF convention)."""
    exponents = torch.arange(0, head_dim, 2, dtype=torch.int64, device=device).float() / head_dim
    return 1.0 / (base ** exponents)


def rope(x: torch.Tensor, positions: torch.Tensor, inv_freq: torch.Tensor, sign: float = 1.0) -> torch.Tensor:
    """Rotary embedding, rotate-half convention, at per-token positions, computed in fp32.

    x `[tokens, heads, head_dim]`, positions `[tokens]` int, inv_freq `[head_dim / 2]` fp32;
    ``theta = float(pos) * inv_freq``; sign -1 rotates back (the gradient). Returns x's dtype.
    """
    theta = positions.to(torch.float32)[:, None] * inv_freq[None, :]  # [tokens, half]
    cos, sin = torch.cos(theta)[:, None, :], (torch.sin(theta) * sign)[:, None, :]
    x1, x2 = x.float().chunk(2, dim=-1)
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1).to(x.dtype)
