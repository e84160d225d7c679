"""An independent step-time evaluation of a scheduler Plan, for checking the planner's own prediction.

Written apart from `longctx.scheduler.simulator` (plain loops, one cost-model
call per sequence, no shared helpers): every rank has a clock at 0 ms; the
waves run in order; a group of a wave starts when the latest of its ranks is
free and lasts the sum of its sequences' times on a group of its size and
kind; its ranks are then busy until it ends. The step time is the latest
clock (ms). Only the cost model's per-sequence time is shared: it is the
input being evaluated, not the bookkeeping under test.
"""
from __future__ import annotations

from longctx.scheduler import Cluster, CostModel, Plan
from longctx.scheduler.cost_model import GroupShape


def independent_step_time_ms(plan: Plan, cluster: Cluster, cost_model: CostModel) -> float:
    """The step time (ms) of `plan`, evaluated from its waves alone."""
    clock = {rank: 0.0 for rank in range(plan.world_size)}
    for wave in plan.waves:
        for group in wave.groups:
            shape = GroupShape.make(len(group.ranks), group.kind, group.ulysses_degree)
            duration = sum(float(cost_model.time_ms([plan.lengths[i]], shape, cluster)[0]) for i in group.sequences)
            end = max(clock[r] for r in group.ranks) + duration
            for r in group.ranks:
                clock[r] = end
    return max(clock.values(), default=0.0)
