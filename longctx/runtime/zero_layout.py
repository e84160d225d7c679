"""Which elements of every parameter each rank owns under optimizer sharding, and the buckets they travel in.

Every parameter is flattened and split into `shards` chunks of
``chunk = ceil(numel / shards)`` elements (the last chunks are short or empty
when `numel` does not divide; the communication buffers pad them with zeros).
Rank r owns elements ``[r * chunk, min((r + 1) * chunk, numel))`` of every
parameter, so each rank's share is within one element per parameter of
``numel / shards`` whatever the world size (3, 4, 7, ...), and one rank's
AdamW update of an element is exactly the unsharded update of that element.

Parameters are grouped, in model order, into buckets of at most
`bucket_elements` padded elements (a bigger parameter gets a bucket of its
own); one collective moves one bucket, so the communication buffers hold one
bucket, never the whole model.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence


@dataclass(frozen=True)
class ParamShard:
    """This rank's slice of one flattened parameter. Units: elements."""

    #: position of the parameter in the optimizer's parameter list
    index: int
    #: elements of the whole parameter
    numel: int
    #: elements per rank in the padded layout, ``ceil(numel / shards)``
    chunk: int
    #: first element this rank owns
    start: int
    #: one past the last element this rank owns (``start == stop``: it owns none)
    stop: int

    @property
    def size(self) -> int:
        return self.stop - self.start


@dataclass(frozen=True)
class ShardLayout:
    """Buckets of `ParamShard` for one rank; ``buckets[b]`` lists the shards of bucket b in model order."""

    shards: int
    rank: int
    buckets: tuple[tuple[ParamShard, ...], ...]

    @staticmethod
    def build(numels: Sequence[int], shards: int, rank: int, bucket_elements: int) -> "ShardLayout":
        """The layout of parameters of `numels` elements over `shards` ranks, seen from `rank`."""
        if shards < 1 or not 0 <= rank < shards:
            raise ValueError(f"ShardLayout: rank={rank} of shards={shards}; need 0 <= rank < shards")
        if bucket_elements < 1:
            raise ValueError(f"ShardLayout: bucket_elements={bucket_elements} must be >= 1")
        buckets: list[list[ParamShard]] = [[]]
        filled = 0
        for index, numel in enumerate(numels):
            chunk = -(-int(numel) // shards)
            start = min(rank * chunk, numel)
            shard = ParamShard(index, int(numel), chunk, start, min(start + chunk, numel))
            if buckets[-1] and filled + chunk * shards > bucket_elements:
                buckets.append([])
                filled = 0
            buckets[-1].append(shard)
            filled += chunk * shards
        return ShardLayout(shards, rank, tuple(tuple(b) for b in buckets if b))

    def all_shards(self) -> list[ParamShard]:
        """Every parameter's shard, in model order."""
        return [shard for bucket in self.buckets for shard in bucket]

    def owned_elements(self) -> int:
        """Elements of all parameters this rank owns (its optimizer state size per tensor kind)."""
        return sum(shard.size for shard in self.all_shards())
