"""Process groups of a plan, created once per distinct rank tuple and cached.

`dist.new_group` is collective over the whole world: every rank must call it,
for the same ranks, in the same order, even for groups it is not part of.
`ProcessGroupCache.prepare(plan)` therefore runs on EVERY rank with the same
plan (the plan is broadcast before it runs) and creates the plan's missing
groups in one deterministic order: the distinct rank tuples of its groups of
two or more ranks, sorted, skipping those already cached. The cache content is
the same on every rank (every rank has seen the same plans), so the calls line
up. The whole world maps to the default group; a group of one needs none.
"""
from __future__ import annotations

import torch.distributed as dist

from longctx.scheduler import Plan


class ProcessGroupCache:
    """Maps a tuple of global ranks (ascending) to its process group."""

    def __init__(self) -> None:
        self._groups: dict[tuple[int, ...], dist.ProcessGroup] = {}

    def __len__(self) -> int:
        return len(self._groups)

    def prepare(self, plan: Plan) -> int:
        """Create every multi-rank group of `plan` not cached yet; call on every rank. Returns how many."""
        world = tuple(range(dist.get_world_size()))
        wanted = sorted({tuple(group.ranks) for _, group in plan.groups() if len(group.ranks) > 1})
        created = 0
        for ranks in wanted:
            if ranks in self._groups:
                continue
            self._groups[ranks] = dist.group.WORLD if ranks == world else dist.new_group(list(ranks))
            created += 1
        return created

    def get(self, ranks: list[int] | tuple[int, ...]) -> dist.ProcessGroup | None:
        """The group of `ranks` (None for a single rank); `prepare` must have seen a plan holding it."""
        key = tuple(ranks)
        if len(key) == 1:
            return None
        if key not in self._groups:
            raise KeyError(f"ProcessGroupCache: no group for ranks {list(key)}; call prepare(plan) on every rank first")
        return self._groups[key]
