"""The ranks that run one attention call together, as a member list of a larger process group.

Attention only ever talks point to point (`longctx.attention.comm`), and P2P
between two ranks works on any process group holding both. So the ranks
sharing a packed batch need no process group of their own: a `RankGroup`
names them as ranks of a group that already exists (in training, the world),
in member order. Creating one is free and local; nothing is collective.

A plain `torch.distributed.ProcessGroup` still works everywhere a group is
taken: `as_rank_group` turns it into the RankGroup of all its ranks.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch.distributed as dist


@dataclass(frozen=True)
class RankGroup:
    """`ranks` (ranks of `process_group`, member order, distinct) sharing one attention call."""

    process_group: dist.ProcessGroup
    ranks: tuple[int, ...]

    def __post_init__(self) -> None:
        if not self.ranks or len(set(self.ranks)) != len(self.ranks):
            raise ValueError(f"RankGroup: ranks={list(self.ranks)} must be a non-empty list of distinct ranks")

    @property
    def size(self) -> int:
        """Number of members."""
        return len(self.ranks)

    @property
    def index(self) -> int:
        """This rank's member index; ValueError when this rank is not a member."""
        mine = dist.get_rank(self.process_group)
        if mine not in self.ranks:
            raise ValueError(f"RankGroup: this rank ({mine}) is not one of the members {list(self.ranks)}")
        return self.ranks.index(mine)

    def members(self, indices: list[int]) -> list[int]:
        """Ranks in `process_group` of the members at `indices` (for `MemberComm`)."""
        return [self.ranks[i] for i in indices]


def as_rank_group(group: dist.ProcessGroup | RankGroup | None) -> RankGroup | None:
    """`group` as a RankGroup: a RankGroup as is, a ProcessGroup as all its ranks, None as None."""
    if group is None or isinstance(group, RankGroup):
        return group
    return RankGroup(group, tuple(range(dist.get_world_size(group))))
