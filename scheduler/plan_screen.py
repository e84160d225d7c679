"""A vectorised screen of a plan's groups: true when every group passes `Plan.validate`'s group checks.

`Plan.validate` checks each group in turn (ranks non-empty, unique, ascending
and inside the world; no rank twice in a wave; a legal kind and shape; node
alignment), which costs seconds on a 100,000-rank plan of 100K groups. The
screen decides the same in a few numpy passes over all groups at once; only
when it finds a problem does `validate` run the group-by-group checks, which
then raise the first problem with its wave, group and numbers. So a valid plan
is checked fast and an invalid one is named exactly as before.
"""
from __future__ import annotations

from itertools import chain

import numpy as np

from longctx.scheduler.cost_model import KINDS, GroupShape
from longctx.scheduler.errors import SchedulerInputError


def groups_pass(waves: list, world_size: int, ranks_per_node: int | None) -> bool:
    """True when every group of `waves` (`PlanWave`s) has legal ranks, kind, shape and (with
    `ranks_per_node`) node alignment, and no rank is in two groups of one wave. False means: some
    group breaks a rule (or its ranks are not integers), so run the named checks."""
    groups = [group for wave in waves for group in wave.groups]
    if not groups:
        return True
    sizes = np.fromiter(map(len, (group.ranks for group in groups)), dtype=np.int64, count=len(groups))
    if not sizes.all() or not _shapes_legal(groups):
        return False
    try:
        ranks = np.fromiter(chain.from_iterable(group.ranks for group in groups), dtype=np.int64,
                            count=int(sizes.sum()))
    except (TypeError, ValueError, OverflowError):
        return False
    starts = np.cumsum(sizes) - sizes
    inside = np.ones(len(ranks), dtype=bool)
    inside[starts] = False  # entries after their group's first
    if (ranks.min() < 0) | (ranks.max() >= world_size) or (np.diff(ranks)[inside[1:]] <= 0).any():
        return False
    wave_of = np.repeat(np.arange(len(waves)), [len(wave.groups) for wave in waves])
    slots = np.repeat(wave_of, sizes) * world_size + ranks  # (wave, rank): each at most once
    if len(np.unique(slots)) != len(slots):
        return False
    return ranks_per_node is None or _aligned(ranks, starts, sizes, ranks_per_node)


def _shapes_legal(groups: list) -> bool:
    """Every distinct (size, kind, Ulysses degree) is a legal `GroupShape` of a known kind."""
    for size, kind, degree in {(len(g.ranks), g.kind, g.ulysses_degree) for g in groups}:
        if kind not in KINDS:
            return False
        try:
            GroupShape(size, kind, degree)
        except (SchedulerInputError, TypeError):
            return False
    return True


def _aligned(ranks: np.ndarray, starts: np.ndarray, sizes: np.ndarray, ranks_per_node: int) -> bool:
    """Groups of at most a node sit in one node; larger ones are whole nodes (ranks ascending, unique).

    `ranks` [all groups' ranks], `starts`/`sizes` [groups]: where each group's ranks begin and how many."""
    nodes = ranks // ranks_per_node
    new_node = np.ones(len(ranks), dtype=bool)
    new_node[1:] = nodes[1:] != nodes[:-1]
    new_node[starts] = True
    nodes_per_group = np.add.reduceat(new_node.astype(np.int64), starts)
    small = sizes <= ranks_per_node
    return bool((nodes_per_group[small] == 1).all()
                and (sizes[~small] == nodes_per_group[~small] * ranks_per_node).all())
