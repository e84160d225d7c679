"""Baselines, timed by the same simulator as the planner.

- Static DP x CP (`static_plan`, `best_static_plan`): world/cp groups of cp
  consecutive ranks, the same for the whole run, ring attention inside a
  group (Megatron-style context parallelism). Order "arrival": the step's
  sequences are cut in arrival order into cp-groups of equal token counts
  (Megatron-style packing: every DP rank gets the same number of tokens).
  Order "balanced": longest-processing-time-first over the DP groups by
  their modelled time. `best_static_plan` tries every CP size that divides the
  world, stays inside a node or takes whole nodes, and holds the longest
  sequence, and keeps the fastest.
- FlexSP-style (`flexsp_plan`): the compact MILP (`milp.py`) over
  power-of-two groups of kind Ulysses only (local for one rank), scheduled by
  the same list scheduler as the planner, so the comparison isolates the
  shape space rather than the scheduling.
- ByteScale-style (`bytescale_plan`): the greedy planner restricted to ring
  groups (any size), local for one rank.
"""
from __future__ import annotations

import heapq
import time

import numpy as np

from longctx.scheduler.cluster import Cluster
from longctx.scheduler.cost_model import CostModel, GroupShape
from longctx.scheduler.errors import SchedulerInputError
from longctx.scheduler.greedy import greedy_plan
from longctx.scheduler.lower_bound import check_fits, lower_bound_ms
from longctx.scheduler.planner import ShapeSpace, plan_in_spaces
from longctx.scheduler.plan import Plan, PlanGroup, PlanWave
from longctx.scheduler.simulator import simulate

ORDERS = ("arrival", "balanced")


def static_plan(lengths, cluster: Cluster, *, cp: int, kind: str = "ring", order: str = "balanced",
                cost_model: CostModel | None = None, lower_bound: float | None = None) -> Plan:
    """Fixed DP x CP mesh: world/cp groups of cp consecutive ranks, one wave."""
    started = time.perf_counter()
    cost_model = cost_model or CostModel()
    check_fits(lengths, cluster, cost_model)
    if order not in ORDERS:
        raise SchedulerInputError(f"order={order!r}: choose one of {list(ORDERS)}")
    if isinstance(cp, bool) or not isinstance(cp, int) or cp < 1 or cluster.num_ranks % cp:
        raise SchedulerInputError(f"cp={cp!r}: must be a positive divisor of num_ranks={cluster.num_ranks}")
    if cp > cluster.ranks_per_node and cp % cluster.ranks_per_node:
        raise SchedulerInputError(
            f"cp={cp}: larger than a node ({cluster.ranks_per_node} ranks) so must be a multiple of it"
        )
    if cluster.ranks_per_node % cp and cp < cluster.ranks_per_node:
        raise SchedulerInputError(f"cp={cp}: must divide ranks_per_node={cluster.ranks_per_node} so groups stay in a node")
    shape = GroupShape.make(1, "local") if cp == 1 else GroupShape.make(cp, kind)
    longest = max(lengths, default=0)
    cap = cost_model.max_tokens_per_rank(cluster)
    if longest > cp * cap:
        raise SchedulerInputError(
            f"cp={cp}: the longest sequence ({longest} tokens) needs more than {cp} ranks x {cap} tokens per rank; "
            f"use cp >= {cost_model.min_group_size(longest, cluster)}"
        )
    dp = cluster.num_ranks // cp
    if order == "arrival":
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]) if len(lengths) else np.zeros(0)
        total = float(sum(lengths))
        owner = np.minimum((starts * dp / max(total, 1.0)).astype(np.int64), dp - 1)
        members = [np.flatnonzero(owner == g).tolist() for g in range(dp)]
    else:
        times = cost_model.time_ms(lengths, shape, cluster)
        members = [[] for _ in range(dp)]
        heap = [(0.0, g) for g in range(dp)]
        for i in np.lexsort((np.arange(len(times)), -times)):
            load, g = heap[0]
            members[g].append(int(i))
            heapq.heapreplace(heap, (load + float(times[i]), g))
    groups = [PlanGroup(list(range(g * cp, (g + 1) * cp)), shape.kind, shape.ulysses_degree, sorted(members[g]))
              for g in range(dp) if members[g]]
    plan = Plan(cluster.num_ranks, [int(x) for x in lengths], [PlanWave(groups)], f"static-{order}-cp{cp}")
    plan.predicted_step_time_ms = simulate(plan, cluster, cost_model).step_time_ms
    plan.lower_bound_ms = lower_bound if lower_bound is not None else lower_bound_ms(lengths, cluster, cost_model)
    plan.solve_time_s = time.perf_counter() - started
    return plan


def static_cp_sizes(cluster: Cluster, longest: int, cost_model: CostModel) -> list[int]:
    """CP sizes a static mesh can use on `cluster` that hold a sequence of `longest` tokens."""
    need = cost_model.min_group_size(longest, cluster) if longest else 1
    rpn = cluster.ranks_per_node
    return [cp for cp in range(max(1, need), cluster.num_ranks + 1)
            if cluster.num_ranks % cp == 0 and (rpn % cp == 0 if cp <= rpn else cp % rpn == 0)]


def best_static_plan(lengths, cluster: Cluster, *, order: str, cost_model: CostModel | None = None,
                     lower_bound: float | None = None) -> Plan:
    """The fastest static DP x CP plan over every CP size that fits."""
    started = time.perf_counter()
    cost_model = cost_model or CostModel()
    bound = lower_bound if lower_bound is not None else lower_bound_ms(lengths, cluster, cost_model)
    plans = [static_plan(lengths, cluster, cp=cp, order=order, cost_model=cost_model, lower_bound=bound)
             for cp in static_cp_sizes(cluster, max(lengths, default=0), cost_model)]
    best = min(plans, key=lambda p: (p.predicted_step_time_ms, len(p.waves[0].groups[0].ranks)))
    best.solve_time_s = time.perf_counter() - started
    best.notes.append("cp tried: " + ", ".join(f"{p.method}={p.predicted_step_time_ms:.0f}ms" for p in plans))
    return best


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
                *, solver: str = "highs", time_limit_s: float = 1.0) -> Plan:
    """FlexSP-style: the MILP (and greedy fallback) over power-of-two Ulysses groups."""
    started = time.perf_counter()
    cost_model = cost_model or CostModel()
    bound = lower_bound if lower_bound is not None else lower_bound_ms(lengths, cluster, cost_model)
    space = ShapeSpace(("ulysses",), power_of_two_sizes(cluster), "flexsp-ulysses-pow2")
    plan = plan_in_spaces(lengths, cluster, cost_model, bound, [space], use_milp=True, solver=solver,
                          time_limit_s=time_limit_s, method=space.label)
    plan.solve_time_s = time.perf_counter() - started
    return plan
