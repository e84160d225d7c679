"""Zigzag (head-tail) sharding of a packed batch over a group of P ranks.

Every document is cut into 2P contiguous chunks whose sizes differ by at most
one token; rank r owns chunks r and 2P-1-r, so each rank gets one early (cheap
under the causal mask) and one late (expensive) piece of every document and
the causal work is balanced. Documents shorter than 2P tokens give empty
chunks. Which chunks get the leftover tokens rotates from one document to the
next (ranks 0..P-1, then again 0..P-1 through the tail chunks), so a batch of
many short documents still spreads its tokens evenly over the ranks.

A rank's tokens are ordered by document, then position: (doc, pos) sorted, as
the local attention kernels require.
"""
from __future__ import annotations

from typing import Sequence

import torch

from longctx.attention.validation import AttentionInputError, check_cu_seqlens
from longctx.kernels.torch_fallbacks import zigzag_chunk_sizes


class ZigzagSharding:
    """The zigzag split of the packed batch `cu_seqlens` (`[docs + 1]`) over `world_size` ranks."""

    def __init__(self, cu_seqlens: torch.Tensor | Sequence[int], world_size: int):
        if world_size < 1:
            raise AttentionInputError(f"world_size={world_size} must be >= 1")
        self.cu_seqlens = check_cu_seqlens(cu_seqlens)
        self.world_size = world_size
        self.total_tokens = int(self.cu_seqlens[-1])
        self._chunk_starts, self._chunk_sizes = self._chunks()
        self._index_cache: dict[int, torch.Tensor] = {}

    def _chunks(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Start (global token index) and size of every chunk, both `[docs, 2P]` int64."""
        sizes = zigzag_chunk_sizes(self.cu_seqlens, self.world_size)
        starts = self.cu_seqlens[:-1, None] + torch.cumsum(sizes, 1) - sizes
        return starts, sizes

    def _check_rank(self, rank: int) -> None:
        if not 0 <= rank < self.world_size:
            raise AttentionInputError(f"rank={rank} is outside the group of {self.world_size} ranks")

    def num_tokens(self, rank: int) -> int:
        """Number of tokens rank `rank` holds."""
        self._check_rank(rank)
        tail = 2 * self.world_size - 1 - rank
        return int(self._chunk_sizes[:, rank].sum() + self._chunk_sizes[:, tail].sum())

    def token_index(self, rank: int) -> torch.Tensor:
        """Global token indices `[n_local]` (int64) of rank `rank`, sorted by (doc, pos)."""
        self._check_rank(rank)
        if rank not in self._index_cache:
            tail = 2 * self.world_size - 1 - rank
            starts = self._chunk_starts[:, [rank, tail]].reshape(-1)
            sizes = self._chunk_sizes[:, [rank, tail]].reshape(-1)
            first_local = torch.cumsum(sizes, 0) - sizes
            n = int(sizes.sum())
            self._index_cache[rank] = torch.repeat_interleave(starts - first_local, sizes) + torch.arange(n)
        return self._index_cache[rank]

    def doc_ids(self, rank: int) -> torch.Tensor:
        """Document id `[n_local]` (int64) of each of rank `rank`'s tokens."""
        return doc_ids_of(self.cu_seqlens, self.token_index(rank))

    def positions(self, rank: int) -> torch.Tensor:
        """Position inside its own document `[n_local]` (int64) of each token (for RoPE)."""
        index = self.token_index(rank)
        return index - self.cu_seqlens[doc_ids_of(self.cu_seqlens, index)]

    def shard(self, x: torch.Tensor, rank: int) -> torch.Tensor:
        """Rows of `x` (`[total_tokens, ...]`) that rank `rank` holds, `[n_local, ...]`."""
        if x.shape[0] != self.total_tokens:
            raise AttentionInputError(
                f"x has {x.shape[0]} rows but cu_seqlens describes {self.total_tokens} tokens"
            )
        return x[self.token_index(rank).to(x.device)]

    def unshard(self, shards: Sequence[torch.Tensor]) -> torch.Tensor:
        """Inverse of `shard`: the full `[total_tokens, ...]` tensor from one shard per rank."""
        if len(shards) != self.world_size:
            raise AttentionInputError(f"unshard needs {self.world_size} shards, got {len(shards)}")
        for rank, s in enumerate(shards):
            if s.shape[0] != self.num_tokens(rank):
                raise AttentionInputError(
                    f"shard {rank} has {s.shape[0]} rows; rank {rank} holds {self.num_tokens(rank)} tokens"
                )
        full = shards[0].new_empty((self.total_tokens, *shards[0].shape[1:]))
        for rank, s in enumerate(shards):
            full[self.token_index(rank).to(s.device)] = s
        return full


def doc_ids_of(cu_seqlens: torch.Tensor, token_index: torch.Tensor) -> torch.Tensor:
    """Document id of each global token index, `[n]` int64."""
    return torch.searchsorted(cu_seqlens[1:], token_index, right=True)
