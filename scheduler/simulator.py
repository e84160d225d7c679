"""Time any Plan under the cost model.

A rank runs its groups in wave order; a group starts when all its members are
free and lasts the sum of its sequences' times on its shape. The step time is
the latest finish over all ranks (ms). Every method, baselines included, is
timed by this one function, so their numbers compare like for like.
"""
from __future__ import annotations

from itertools import chain
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
    groups = [group for _, group in plan.groups()]
    if not groups:
        return []
    lengths = np.fromiter(plan.lengths, dtype=np.float64, count=len(plan.lengths))
    counts = np.array([len(g.sequences) for g in groups], dtype=np.int64)
    sequences = np.fromiter(chain.from_iterable(g.sequences for g in groups), dtype=np.int64, count=int(counts.sum()))
    owner = np.repeat(np.arange(len(groups)), counts)
    shape_ids: dict[tuple[int, str, int], int] = {}  # (size, kind, Ulysses degree): one GroupShape each
    group_shape = np.array([shape_ids.setdefault((len(g.ranks), g.kind, g.ulysses_degree), len(shape_ids))
                            for g in groups], dtype=np.int64)
    seq_shape = group_shape[owner]
    totals = np.zeros(len(groups))
    for key, k in shape_ids.items():
        mask = seq_shape == k
        totals += np.bincount(owner[mask], weights=cost_model.time_ms(lengths[sequences[mask]], GroupShape(*key),
                                                                      cluster), minlength=len(groups))
    return totals.tolist()


def simulate(plan: Plan, cluster: Cluster, cost_model: CostModel) -> Simulation:
    free = [0.0] * plan.world_size
    busy = 0.0
    for (_, group), duration in zip(plan.groups(), group_times_ms(plan, cluster, cost_model)):
        ranks = group.ranks
        end = max(free[r] for r in ranks) + duration
        for r in ranks:
            free[r] = end
        busy += duration * len(ranks)
    finish = np.array(free)
    return Simulation(float(finish.max(initial=0.0)), finish, busy)
