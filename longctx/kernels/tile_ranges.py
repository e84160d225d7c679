"""Which keys a query tile can see, and which queries a key tile is seen by.

The document-masked causal rule is: query i sees key j iff
``q_doc[i] == k_doc[j] and k_pos[j] <= q_pos[i]``. Both buffers are sorted by
(doc, pos), so every tile's partners form one contiguous range of the other
buffer, found by ``searchsorted`` on a combined sort key. Tiles outside that
range are never visited by the kernels; tiles inside it are classified again
in the kernel (fully visible, partly visible, or empty).
"""
from __future__ import annotations

import torch

#: positions must be below this; a (doc, pos) pair sorts as doc * _POS_SPAN + pos.
_POS_SPAN = 1 << 32


def sort_key(doc: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """Combined int64 key ``doc * 2**32 + pos`` `[n]`, non-decreasing for a (doc, pos)-sorted buffer."""
    return doc.to(torch.int64) * _POS_SPAN + pos.to(torch.int64)


def _tile_bounds(n: int, block: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Index of the first and the last row of every tile of `block` rows over `n` rows."""
    first = torch.arange(0, n, block, device=device, dtype=torch.int64)
    last = torch.clamp(first + block, max=n) - 1
    return first, last


def key_ranges_per_query_tile(
    q_doc: torch.Tensor, q_pos: torch.Tensor, k_doc: torch.Tensor, k_pos: torch.Tensor, block_m: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Key ranges of every query tile of `block_m` rows: ``[start, full_end)`` and ``[start, end)``.

    A tile's keys run from the first key of its first row's document up to the last key
    at or before its last row's (doc, pos). When the tile lies in one document, the keys
    ``[start, full_end)`` (that document's keys at or before its first row's position) are
    visible to every row of the tile; otherwise ``full_end == start``. Three int32 tensors
    `[ceil(Nq / block_m)]`; ``end <= start`` means the tile sees nothing.
    """
    q_key, k_key = sort_key(q_doc, q_pos), sort_key(k_doc, k_pos)
    first, last = _tile_bounds(q_key.numel(), block_m, q_key.device)
    start = torch.searchsorted(k_key, q_doc[first].to(torch.int64) * _POS_SPAN, right=False)
    end = torch.searchsorted(k_key, q_key[last], right=True)
    one_doc = q_doc[first] == q_doc[last]
    full_end = torch.where(one_doc, torch.searchsorted(k_key, q_key[first], right=True), start)
    return start.to(torch.int32), torch.maximum(full_end, start).to(torch.int32), end.to(torch.int32)


def query_ranges_per_key_tile(
    q_doc: torch.Tensor, q_pos: torch.Tensor, k_doc: torch.Tensor, k_pos: torch.Tensor, block_n: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Query ranges of every key tile of `block_n` keys: ``[start, end)`` and its fully-seeing ``[full_start, end)``.

    A key tile is seen by the queries at or after its first key's (doc, pos) whose document
    is at most its last key's document. When the tile lies in one document, the queries at
    or after its last key's (doc, pos) see all of it; otherwise ``full_start == end``.
    Three int32 tensors `[ceil(Nk / block_n)]`.
    """
    q_key, k_key = sort_key(q_doc, q_pos), sort_key(k_doc, k_pos)
    first, last = _tile_bounds(k_key.numel(), block_n, k_key.device)
    start = torch.searchsorted(q_key, k_key[first], right=False)
    end = torch.searchsorted(q_key, (k_doc[last].to(torch.int64) + 1) * _POS_SPAN, right=False)
    one_doc = k_doc[first] == k_doc[last]
    full_start = torch.where(one_doc, torch.searchsorted(q_key, k_key[last], right=False), end)
    full_start = torch.minimum(torch.maximum(full_start, start), end)
    return start.to(torch.int32), full_start.to(torch.int32), end.to(torch.int32)
