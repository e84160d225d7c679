"""Which communicator carries each group of a plan: always the world, so no communicator is ever created.

Design. Every exchange a plan's group makes is attention's (ring K/V shifts,
Ulysses all-to-alls, the tiny input agreement), and attention talks only point
to point (`batch_isend_irecv`, `longctx.attention.comm`). P2P between two ranks
works on any process group holding both, so a group of a plan is just a
`RankGroup`: its ranks named as ranks of the world group. Gradient sync,
metrics and the stop decision are world collectives already.

Why not one `new_group` per rank tuple (the earlier cache): `new_group` is a
collective over the whole world that every rank must enter in the same order,
a dynamic planner names new tuples step after step, and on NCCL each group is
a communicator (device memory, a bootstrap) that lives until the end. Why not
a fixed family of node-aligned groups built once: the planner places groups
anywhere (moldable, not node-aligned), so a fixed family either misses tuples
or grows with every (start, size) pair. With the world carrying everything,
the communicators in use are the world's alone, created at init; every plan
maps to the same one and the count of communicators created after the first
step is 0 by construction (`communicators_created` counts it from the same
mapping the runtime uses; `longctx bench communicators` reports it).

On NCCL, `batch_isend_irecv` coalesces the step's sends and receives into one
NCCL group call on the world communicator, with only the named peers taking
part.
"""
from __future__ import annotations

from typing import Iterable

import torch.distributed as dist

from longctx.attention import RankGroup
from longctx.scheduler import Plan

#: the key of the world communicator in `communicator_key`'s answers
WORLD = "world"


def communicator_key(ranks: Iterable[int]) -> str | None:
    """The communicator that carries a group of `ranks`: `WORLD`, or None for a group of one (no communication)."""
    return None if len(tuple(ranks)) <= 1 else WORLD


def communicators_created(plans: Iterable[Plan]) -> list[int]:
    """Communicators each plan in turn makes the runtime create beyond the world (which exists from init)."""
    known = {WORLD}
    created = []
    for plan in plans:
        keys = {communicator_key(group.ranks) for _, group in plan.groups()} - {None}
        created.append(len(keys - known))
        known |= keys
    return created


class ProcessGroupCache:
    """Maps a tuple of global ranks to the `RankGroup` that runs its attention (see the module docstring)."""

    def prepare(self, plan: Plan) -> int:
        """Communicators `plan` needs created (none; kept so callers need not know the design). Local."""
        return communicators_created([plan])[0]

    def get(self, ranks: list[int] | tuple[int, ...]) -> RankGroup | None:
        """The group of `ranks` (global, member order) on the world; None for a single rank."""
        if communicator_key(ranks) is None:
            return None
        return RankGroup(dist.group.WORLD, tuple(int(r) for r in ranks))
