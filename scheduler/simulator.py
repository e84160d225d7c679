"""Time any Plan under the cost model.

A rank runs its groups in wave order; a group starts when all its members are
free and lasts the sum of its sequences' times on its shape. The step time is
the latest finish over all ranks (ms). Every method, baselines included, is
timed by this one function, so their numbers compare like for like.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from longctx.scheduler.cluster import Cluster
from longctx.scheduler.cost_model import CostModel, GroupShape
from longctx.scheduler.plan import Plan


@dataclass(frozen=True)
class Simulation:
    step_time_ms: float
    rank_finish_ms: np.ndarray  #: [world_size] time each rank finishes, ms
    busy_ms: float  #: sum over ranks of time spent computing, ms


def group_times_ms(plan: Plan, cluster: Cluster, cost_model: CostModel) -> list[float]:
    """Duration (ms) of every group of `plan`, in `plan.groups()` order."""
    lengths = np.asarray(plan.lengths, dtype=np.float64)
    by_shape: dict[GroupShape, list[tuple[int, int]]] = defaultdict(list)
    groups = [group for _, group in plan.groups()]
    for index, group in enumerate(groups):
        by_shape[group.shape].extend((index, seq) for seq in group.sequences)
    totals = np.zeros(len(groups))
    for shape, pairs in by_shape.items():
        idx = np.fromiter((p[0] for p in pairs), dtype=np.int64, count=len(pairs))
        seq = np.fromiter((p[1] for p in pairs), dtype=np.int64, count=len(pairs))
        np.add.at(totals, idx, cost_model.time_ms(lengths[seq], shape, cluster))
    return totals.tolist()


def simulate(plan: Plan, cluster: Cluster, cost_model: CostModel) -> Simulation:
    free = np.zeros(plan.world_size)
    busy = 0.0
    for (_, group), duration in zip(plan.groups(), group_times_ms(plan, cluster, cost_model)):
        ranks = group.ranks
        start = free[ranks[0]] if len(ranks) == 1 else free[ranks].max()
        free[ranks] = start + duration
        busy += duration * len(ranks)
    return Simulation(float(free.max(initial=0.0)), free, busy)
