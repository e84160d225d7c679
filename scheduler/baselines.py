"""Baselines, timed by the same simulator as the planner.

- Static DP x CP: `static.py` (the planner uses it too).
- FlexSP-style (`flexsp_plan`): the compact MILP (`milp.py`) over
  power-of-two groups of kind Ulysses only (local for one rank), scheduled by
  the same list scheduler as the planner, so the comparison isolates the
  shape space rather than the scheduling.
- ByteScale-style (`bytescale_plan`): the greedy planner restricted to ring
  groups (any size), local for one rank.
"""
from __future__ import annotations

import time

from longctx.scheduler.budget import Budget
from longctx.scheduler.cluster import Cluster
from longctx.scheduler.cost_model import CostModel
from longctx.scheduler.greedy import greedy_plan
from longctx.scheduler.lower_bound import lower_bound_ms
from longctx.scheduler.planner import ShapeSpace, plan_in_spaces
from longctx.scheduler.plan import Plan


def bytescale_plan(lengths, cluster: Cluster, cost_model: CostModel | None = None,
                   lower_bound: float | None = None) -> Plan:
    """ByteScale-style: greedy balance over ring groups of any size."""
    started = time.perf_counter()
    cost_model = cost_model or CostModel()
    bound = lower_bound if lower_bound is not None else lower_bound_ms(lengths, cluster, cost_model)
    plan = greedy_plan(lengths, cluster, cost_model, bound, kinds=("ring",), method="bytescale-greedy-ring")
    plan.solve_time_s = time.perf_counter() - started
    return plan


def power_of_two_sizes(cluster: Cluster) -> tuple[int, ...]:
    return tuple(2 ** k for k in range(1, cluster.num_ranks.bit_length()) if 2 ** k <= cluster.num_ranks)


def flexsp_plan(lengths, cluster: Cluster, cost_model: CostModel | None = None, lower_bound: float | None = None,
                *, solver: str = "highs", time_limit_s: float | None = 1.0) -> Plan:
    """FlexSP-style: the MILP (and greedy fallback) over power-of-two Ulysses groups."""
    started = time.perf_counter()
    cost_model = cost_model or CostModel()
    bound = lower_bound if lower_bound is not None else lower_bound_ms(lengths, cluster, cost_model)
    space = ShapeSpace(("ulysses",), power_of_two_sizes(cluster), "flexsp-ulysses-pow2")
    plan = plan_in_spaces(lengths, cluster, cost_model, bound, [space], use_milp=True, solver=solver,
                          budget=Budget(time_limit_s), method=space.label)
    plan.solve_time_s = time.perf_counter() - started
    return plan
