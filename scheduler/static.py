"""Static DP x CP plans: the fixed mesh every dynamic plan is compared with.

`static_plan`: world/cp groups of cp consecutive ranks, the same for the
whole run, ring attention inside a group (Megatron-style context
parallelism), one wave. Order "arrival": the step's sequences are cut in
arrival order into cp-groups of equal token counts (Megatron-style packing:
every DP rank gets the same number of tokens). Order "balanced":
longest-processing-time-first over the DP groups by their modelled time (the
greedy's LPT: exact for the 2*dp longest, batched after; ties to the earlier
sequence and the lower group).

`best_static_plan`: the fastest over every CP size that divides the world,
stays inside a node or takes whole nodes, and holds the longest sequence.
Sizes are tried in the order of a cheap bound on their step time
(``max(longest sequence, total time / dp)`` on that size) and a size whose
bound cannot beat the best plan so far is skipped, so the result is exactly
the exhaustive search's (ties to the smaller CP size) at a fraction of the
cost. The planner (`planner.py`) adds this plan to every step's candidates,
so its plan is never slower than static by construction.
"""
from __future__ import annotations

import time

import numpy as np

from longctx.scheduler.cluster import Cluster
from longctx.scheduler.cost_model import CostModel, GroupShape
from longctx.scheduler.errors import SchedulerInputError
from longctx.scheduler.greedy import assign_local
from longctx.scheduler.lower_bound import check_fits, lower_bound_ms
from longctx.scheduler.plan import Plan, PlanGroup, PlanWave
from longctx.scheduler.simulator import simulate

ORDERS = ("arrival", "balanced")


def _check_cp(cp, cluster: Cluster) -> None:
    if isinstance(cp, bool) or not isinstance(cp, int) or cp < 1 or cluster.num_ranks % cp:
        raise SchedulerInputError(f"cp={cp!r}: must be a positive divisor of num_ranks={cluster.num_ranks}")
    if cp > cluster.ranks_per_node and cp % cluster.ranks_per_node:
        raise SchedulerInputError(
            f"cp={cp}: larger than a node ({cluster.ranks_per_node} ranks) so must be a multiple of it"
        )
    if cluster.ranks_per_node % cp and cp < cluster.ranks_per_node:
        raise SchedulerInputError(f"cp={cp}: must divide ranks_per_node={cluster.ranks_per_node} so groups stay in a node")


def _shape(cp: int, kind: str) -> GroupShape:
    return GroupShape.make(1, "local") if cp == 1 else GroupShape.make(cp, kind)


def _balanced_members(times: np.ndarray, dp: int) -> list[list[int]]:
    """Longest-first over `dp` groups by modelled time (ms): the greedy's LPT (`greedy.assign_local`,
    exact for the 2*dp longest, batched after), ties to the earlier sequence and the lower group."""
    order = np.lexsort((np.arange(len(times)), -times))
    owner = assign_local(np.zeros(dp), order, times[order])
    by_group = np.argsort(owner, kind="stable")
    cuts = np.searchsorted(owner[by_group], np.arange(dp + 1))
    members = order[by_group]
    return [members[cuts[g]:cuts[g + 1]].tolist() for g in range(dp)]


def _arrival_members(lengths, dp: int) -> list[list[int]]:
    """Sequences cut in arrival order into `dp` runs of about equal token counts."""
    if not len(lengths):
        return [[] for _ in range(dp)]
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    owner = np.minimum((starts * dp / max(float(sum(lengths)), 1.0)).astype(np.int64), dp - 1)
    cuts = np.searchsorted(owner, np.arange(dp + 1))
    return [list(range(cuts[g], cuts[g + 1])) for g in range(dp)]


def static_plan(lengths, cluster: Cluster, *, cp: int, kind: str = "ring", order: str = "balanced",
                cost_model: CostModel | None = None, lower_bound: float | None = None) -> Plan:
    """Fixed DP x CP mesh: world/cp groups of cp consecutive ranks, one wave."""
    started = time.perf_counter()
    cost_model = cost_model or CostModel()
    check_fits(lengths, cluster, cost_model)
    if order not in ORDERS:
        raise SchedulerInputError(f"order={order!r}: choose one of {list(ORDERS)}")
    _check_cp(cp, cluster)
    longest = max(lengths, default=0)
    cap = cost_model.max_tokens_per_rank(cluster)
    if longest > cp * cap:
        raise SchedulerInputError(
            f"cp={cp}: the longest sequence ({longest} tokens) needs more than {cp} ranks x {cap} tokens per rank; "
            f"use cp >= {cost_model.min_group_size(longest, cluster)}"
        )
    bound = lower_bound if lower_bound is not None else lower_bound_ms(lengths, cluster, cost_model, checked=True)
    plan = _static_plan(np.asarray(lengths, dtype=np.int64), cluster, cp, kind, order, cost_model, bound)
    plan.solve_time_s = time.perf_counter() - started
    return plan


def _times_ms(lengths: np.ndarray, shape, cluster: Cluster, cost_model: CostModel) -> np.ndarray:
    """[sequences] time (ms) of each sequence on `shape`, evaluated once per distinct length."""
    distinct, inverse = np.unique(lengths, return_inverse=True)
    return cost_model.time_ms(distinct, shape, cluster)[inverse]


def _static_plan(lengths: np.ndarray, cluster: Cluster, cp: int, kind: str, order: str, cost_model: CostModel,
                 bound: float) -> Plan:
    """`static_plan` on checked input: `lengths` [sequences] int64 tokens, `bound` ms."""
    shape = _shape(cp, kind)
    dp = cluster.num_ranks // cp
    if order == "arrival":
        members = _arrival_members(lengths, dp)
    else:
        members = _balanced_members(_times_ms(lengths, shape, cluster, cost_model), dp)
    groups = [PlanGroup(list(range(g * cp, (g + 1) * cp)), shape.kind, shape.ulysses_degree, sorted(members[g]))
              for g in range(dp) if members[g]]
    plan = Plan(cluster.num_ranks, lengths.tolist(), [PlanWave(groups)], f"static-{order}-cp{cp}")
    plan.predicted_step_time_ms = simulate(plan, cluster, cost_model).step_time_ms
    plan.lower_bound_ms = bound
    return plan


def static_cp_sizes(cluster: Cluster, longest: int, cost_model: CostModel) -> list[int]:
    """CP sizes a static mesh can use on `cluster` that hold a sequence of `longest` tokens."""
    need = cost_model.min_group_size(longest, cluster) if longest else 1
    rpn = cluster.ranks_per_node
    return [cp for cp in range(max(1, need), cluster.num_ranks + 1)
            if cluster.num_ranks % cp == 0 and (rpn % cp == 0 if cp <= rpn else cp % rpn == 0)]


def static_bound_ms(distinct: np.ndarray, counts: np.ndarray, cluster: Cluster, cost_model: CostModel,
                    cp: int) -> float:
    """No static plan with this CP size is faster: max(longest sequence, total time / dp), ms.

    `distinct` [lengths] tokens and `counts` [lengths]: the step's distinct lengths and how often each occurs.
    """
    times = cost_model.time_ms(distinct, _shape(cp, "ring"), cluster)
    return float(max(times.max(initial=0.0), (times * counts).sum() / (cluster.num_ranks // cp)))


def best_static_plan(lengths, cluster: Cluster, *, order: str, cost_model: CostModel | None = None,
                     lower_bound: float | None = None) -> Plan:
    """The fastest static DP x CP plan over every CP size that fits (ties to the smaller CP size)."""
    started = time.perf_counter()
    cost_model = cost_model or CostModel()
    check_fits(lengths, cluster, cost_model)
    if order not in ORDERS:
        raise SchedulerInputError(f"order={order!r}: choose one of {list(ORDERS)}")
    bound = lower_bound if lower_bound is not None else lower_bound_ms(lengths, cluster, cost_model, checked=True)
    best = best_static_checked(np.asarray(lengths, dtype=np.int64), cluster, cost_model, bound, order)
    best.solve_time_s = time.perf_counter() - started
    return best


def best_static_checked(s: np.ndarray, cluster: Cluster, cost_model: CostModel, bound: float, order: str) -> Plan:
    """`best_static_plan` on checked input: `s` [sequences] int64 tokens, `bound` ms."""
    sizes = static_cp_sizes(cluster, int(s.max(initial=0)), cost_model)
    distinct, counts = np.unique(s, return_counts=True)
    by_bound = sorted((static_bound_ms(distinct, counts, cluster, cost_model, cp), cp) for cp in sizes)
    best, tried = None, []
    for floor, cp in by_bound:
        if best is not None and (floor, cp) > (best.predicted_step_time_ms, len(best.waves[0].groups[0].ranks)):
            tried.append(f"cp{cp}>={floor:.0f}ms")
            continue
        plan = _static_plan(s, cluster, cp, "ring", order, cost_model, bound)
        tried.append(f"cp{cp}={plan.predicted_step_time_ms:.0f}ms")
        if best is None or (plan.predicted_step_time_ms, cp) < (best.predicted_step_time_ms,
                                                                len(best.waves[0].groups[0].ranks)):
            best = plan
    best.notes.append("cp tried (skipped: bound >= best): " + ", ".join(tried))
    return best
