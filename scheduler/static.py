"""Static DP x CP plans: the fixed mesh every dynamic plan is compared with.

`static_plan`: world/cp groups of cp consecutive ranks, the same for the
whole run, ring attention inside a group (Megatron-style context
parallelism), one wave. Order "arrival": the step's sequences are cut in
arrival order into cp-groups of equal token counts (Megatron-style packing:
every DP rank gets the same number of tokens). Order "balanced":
longest-processing-time-first over the DP groups by their modelled time
(`lpt.lpt_rounds`: exact for the 2*dp longest, then rounds of one sequence per
group; ties to the earlier sequence and the lower group). A one-wave plan's
step time is its slowest group, summed exactly as `simulate` sums it, so the
CP sizes are compared without building their plans.

`best_static_plan`: the fastest over every CP size that divides the world,
stays inside a node or takes whole nodes, and holds the longest sequence.
Sizes are tried in the order of a cheap bound on their step time
(``max(longest sequence, total time / dp)`` on that size) and a size whose
bound cannot beat the best plan so far is skipped, so the result is exactly
the exhaustive search's (ties to the smaller CP size) at a fraction of the
cost; only the winner is built into a Plan. The planner (`planner.py`) adds this plan to every step's candidates,
so its plan is never slower than static by construction.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from longctx.scheduler.cluster import Cluster
from longctx.scheduler.cost_model import CostModel, GroupShape
from longctx.scheduler.errors import SchedulerInputError
from longctx.scheduler.lower_bound import check_fits, lower_bound_ms
from longctx.scheduler.lpt import lpt_rounds
from longctx.scheduler.plan import Plan, PlanGroup, PlanWave
from longctx.scheduler.step_lengths import StepLengths, stable_argsort

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


def _balanced_owner(step: StepLengths, distinct_ms: np.ndarray, dp: int) -> np.ndarray:
    """[sequences] DP group of each sequence: longest-first over `dp` groups by modelled time
    (`distinct_ms` [distinct lengths] ms; `lpt.lpt_rounds`), ties to the earlier sequence and the lower group."""
    order = step.longest_first(distinct_ms)
    owner = np.empty(len(order), dtype=np.int64)
    owner[order] = lpt_rounds(np.zeros(dp), distinct_ms[step.inverse[order]])
    return owner


def _arrival_owner(lengths: np.ndarray, dp: int) -> np.ndarray:
    """[sequences] DP group of each sequence: arrival order cut into `dp` runs of about equal token counts."""
    starts = np.cumsum(lengths) - lengths  # tokens before each sequence
    return np.minimum((starts * dp / max(float(lengths.sum()), 1.0)).astype(np.int64), dp - 1)


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
    step = StepLengths.of(np.asarray(lengths, dtype=np.int64))
    plan = _static_plan(step, cluster, cp, kind, order, bound, *_assignment(step, cluster, cp, kind, order, cost_model))
    plan.solve_time_s = time.perf_counter() - started
    return plan


def _assignment(step: StepLengths, cluster: Cluster, cp: int, kind: str, order: str,
                cost_model: CostModel) -> tuple[np.ndarray, float]:
    """(owner [sequences] DP group, step time ms) of the static mesh with CP size `cp`.

    The step time is the slowest group's sum of its sequences' times, summed in sequence order as
    `simulate` sums a one-wave plan (bit for bit the same number)."""
    dp = cluster.num_ranks // cp
    distinct_ms = cost_model.time_ms(step.distinct, _shape(cp, kind), cluster)
    if order == "arrival":
        owner = _arrival_owner(step.lengths, dp)
    else:
        owner = _balanced_owner(step, distinct_ms, dp)
    return owner, float(np.bincount(owner, weights=distinct_ms[step.inverse], minlength=dp).max(initial=0.0))


def _static_plan(step: StepLengths, cluster: Cluster, cp: int, kind: str, order: str, bound: float,
                 owner: np.ndarray, step_ms: float) -> Plan:
    """The Plan of the static mesh with CP size `cp` whose `_assignment` is (`owner`, `step_ms`) (`bound` ms)."""
    shape = _shape(cp, kind)
    dp = cluster.num_ranks // cp
    by_group = stable_argsort(owner, dp)  # stable: each group's sequences stay ascending
    cuts = np.searchsorted(owner[by_group], np.arange(dp + 1)).tolist()
    groups = [PlanGroup(list(range(g * cp, (g + 1) * cp)), shape.kind, shape.ulysses_degree,
                        by_group[cuts[g]:cuts[g + 1]].tolist())
              for g in range(dp) if cuts[g + 1] > cuts[g]]
    return Plan(cluster.num_ranks, step.lengths.tolist(), [PlanWave(groups)], f"static-{order}-cp{cp}",
                predicted_step_time_ms=step_ms, lower_bound_ms=bound)


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
    best = best_static_checked(StepLengths.of(lengths), cluster, cost_model, bound, order)
    best.solve_time_s = time.perf_counter() - started
    return best


@dataclass(frozen=True)
class StaticChoice:
    """The fastest static mesh of a step, not yet built into a Plan (building the groups of 1.6M sequences
    costs 0.1 s, worth it only when the mesh wins). `predicted_step_time_ms` (ms) and `method` read as a
    Plan's; `plan()` builds it."""

    method: str
    predicted_step_time_ms: float
    cp: int
    order: str
    owner: np.ndarray  #: [sequences] DP group of each sequence
    notes: tuple[str, ...]

    def plan(self, step: StepLengths, cluster: Cluster, bound: float) -> Plan:
        """The Plan of this mesh for `step` on `cluster` (`bound`: its lower_bound_ms, ms)."""
        plan = _static_plan(step, cluster, self.cp, "ring", self.order, bound, self.owner, self.predicted_step_time_ms)
        plan.notes.extend(self.notes)
        return plan


def best_static_checked(step: StepLengths, cluster: Cluster, cost_model: CostModel, bound: float,
                        order: str) -> Plan:
    """`best_static_plan` on checked input (`bound` ms)."""
    return best_static_choice(step, cluster, cost_model, order).plan(step, cluster, bound)


def best_static_choice(step: StepLengths, cluster: Cluster, cost_model: CostModel, order: str,
                       beat_ms: float = float("inf")) -> StaticChoice | None:
    """The fastest static mesh over every CP size that fits (ties to the smaller CP size), on checked input;
    None when no CP size's bound is below `beat_ms` (ms: then no static mesh is faster than that)."""
    sizes = static_cp_sizes(cluster, int(step.lengths.max(initial=0)), cost_model)
    by_bound = sorted((static_bound_ms(step.distinct, step.counts, cluster, cost_model, cp), cp) for cp in sizes)
    if not by_bound or by_bound[0][0] >= beat_ms:
        return None
    best, tried = None, []  # best: (step ms, cp, assignment)
    for floor, cp in by_bound:
        if best is not None and (floor, cp) > best[:2] or floor >= beat_ms:
            tried.append(f"cp{cp}>={floor:.0f}ms")
            continue
        assignment = _assignment(step, cluster, cp, "ring", order, cost_model)
        tried.append(f"cp{cp}={assignment[1]:.0f}ms")
        if best is None or (assignment[1], cp) < best[:2]:
            best = (assignment[1], cp, assignment)
    step_ms, cp, (owner, _) = best
    return StaticChoice(f"static-{order}-cp{cp}", step_ms, cp, order, owner,
                        ("cp tried (skipped: bound >= best): " + ", ".join(tried),))
