"""`plan_step`: the per-step entry point the runtime calls.

Steps: check the input; compute the lower bound; make the best static DP x CP
plan and take any peer plans (both are candidates, so the result is never
slower than either); make the greedy's candidates over all shapes and over
ring-only shapes (the ByteScale-style space); for method "milp", add the
compact MILP's candidate, warm-started from the most promising greedy
candidate; schedule the best candidates; re-place the whole-node jobs of the
two best-estimated candidates with moldable node counts (`moldable.py`: each
job picks its node count as it is placed, filling the nodes up to a target
near the lower bound); then, for method "milp", the long-document MILP
(`longdoc.py`) re-chooses the whole-node jobs' node counts jointly with the
room left for the tail; keep the fastest plan of all. Solver trouble never
raises: the plan falls back to the greedy candidates and says why in
`plan.method` ("milp-fallback-greedy") and `plan.notes` (and the log).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from longctx.scheduler.budget import Budget
from longctx.scheduler.cluster import Cluster
from longctx.scheduler.cost_model import CostModel
from longctx.scheduler.errors import SchedulerInputError
from longctx.scheduler.greedy import estimate_candidates, greedy_candidates, schedule_best, to_waves
from longctx.scheduler.lower_bound import check_fits, lower_bound_ms
from longctx.scheduler.longdoc import longdoc_plan
from longctx.scheduler.milp import MILP_NODE_LIMIT, SOLVERS, milp_candidate
from longctx.scheduler.moldable import moldable_schedule
from longctx.scheduler.plan import Plan, PlanInvalidError
from longctx.scheduler.simulator import simulate
from longctx.scheduler.static import best_static_checked

log = logging.getLogger(__name__)

METHODS = ("milp", "greedy")
ALL_KINDS = ("ring", "ulysses", "hybrid")
#: relative difference below which two candidates' step times count as equal
TIE_RTOL = 1e-9
#: candidates (best greedy estimates first) whose whole-node jobs are re-placed as moldable
MOLDABLE_CANDIDATES = 2


@dataclass(frozen=True)
class ShapeSpace:
    """Which shapes a search may use: attention kinds and group sizes (None = the default sizes)."""

    kinds: tuple[str, ...]
    sizes: tuple[int, ...] | None
    label: str


def plan_in_spaces(lengths, cluster: Cluster, cost_model: CostModel, lower_bound: float, spaces: list[ShapeSpace],
                   *, use_milp: bool, solver: str, budget: Budget, node_limit: int = MILP_NODE_LIMIT, method: str,
                   moldable: bool = False) -> Plan:
    """Greedy candidates in every space (+ the MILP's in the first), best schedule kept.

    `moldable`: also re-place the whole-node jobs of the MOLDABLE_CANDIDATES best-estimated
    candidates with moldable node counts over the first space's kinds (`moldable.py`) and keep
    that schedule when it is faster.
    """
    candidates = []
    for space in spaces:
        candidates += greedy_candidates(lengths, cluster, cost_model, lower_bound, kinds=space.kinds,
                                        sizes=space.sizes, label=space.label)
    notes = []
    if use_milp and not budget.expired("compact MILP"):
        first = spaces[0]
        own = [c for c in candidates if c.label.startswith(first.label)]
        estimate_candidates(own, lengths, cluster, cost_model)
        start = min(own, key=lambda c: c.estimate_ms)
        found, status = milp_candidate(lengths, cluster, cost_model, lower_bound, start,
                                       shapes=cost_model.shapes(cluster, first.kinds, first.sizes), solver=solver,
                                       time_limit_s=budget.solver_limit_s(), node_limit=node_limit,
                                       label=f"{first.label}-milp")
        if found is None:
            log.warning("longctx.scheduler: MILP gave no plan, using the greedy: %s", status)
            notes.append(f"fell back to greedy: {status}")
            method = f"{method}-fallback-greedy"
        else:
            notes.append(status)
            candidates.insert(0, found)
    plan, _ = schedule_best(candidates, lengths, cluster, cost_model, lower_bound, method)
    if moldable and not budget.expired("moldable re-placement"):
        ranked = sorted(candidates, key=lambda c: c.estimate_ms)[:MOLDABLE_CANDIDATES]  # stable: ties keep order
        found = moldable_schedule(ranked, lengths, cluster, cost_model, lower_bound, spaces[0].kinds)
        if found is not None and found[0] < plan.predicted_step_time_ms:
            step, placed, label = found
            plan = Plan(cluster.num_ranks, [int(x) for x in lengths], to_waves(placed), method,
                        predicted_step_time_ms=step, lower_bound_ms=lower_bound,
                        notes=[f"best of {len(candidates)} candidates and moldable re-placements: {label}"])
    plan.notes = notes + plan.notes
    return plan


def plan_step(lengths: list[int], cluster: Cluster, *, cost_model: CostModel | None = None, method: str = "milp",
              solver: str = "highs", time_limit_s: float | None = 1.0, milp_node_limit: int = MILP_NODE_LIMIT,
              peer_plans: Sequence[Plan] = ()) -> Plan:
    """Plan one step's dynamic mesh for sequences of `lengths` tokens on `cluster`.

    Candidates, in order: the best static DP x CP plan (balanced, every CP size; `static.py`),
    each of `peer_plans` (plans made by other tools, e.g. megatron-core's BalancedCPScheduler via
    `longctx.peers.megatron_balanced_cp`; kept only when they pass `Plan.validate` with this
    cluster's memory and node alignment), then longctx's own search (greedy shape choices, the
    compact MILP and moldable re-placement, and the long-document MILP, `longdoc.py`, for
    method "milp"). The fastest under `simulate` wins, ties to the earlier candidate, so the plan
    is never slower than static or any valid peer plan under the cost model (up to TIE_RTOL).

    Time and determinism: `time_limit_s` bounds the wall time of the whole call, preparation
    included: stages that start after it has passed are skipped (named in `plan.notes`) and the
    solver gets only the time left. The static plan is always made, so an expired budget still
    returns a plan never slower than static. The search itself is bounded by deterministic work
    limits (a fixed list of candidates, and `milp_node_limit` branch-and-bound nodes per MILP
    solve, single-threaded, fixed seed), so the same input gives the same plan on any machine
    unless the wall-clock limit cuts a stage short, which the notes then say ("wall-clock
    limit"). `time_limit_s=None` disables the wall-clock limit: fully deterministic (what the
    determinism tests use).
    """
    budget = Budget(time_limit_s)
    cost_model = cost_model or CostModel()
    if method not in METHODS:
        raise SchedulerInputError(f"method={method!r}: choose one of {list(METHODS)}")
    if solver not in SOLVERS:
        raise SchedulerInputError(f"solver={solver!r}: choose one of {list(SOLVERS)}")
    if time_limit_s is not None and (isinstance(time_limit_s, bool) or not isinstance(time_limit_s, (int, float))
                                     or time_limit_s < 0):
        raise SchedulerInputError(f"time_limit_s={time_limit_s!r}: must be a number of seconds >= 0, or None")
    if isinstance(milp_node_limit, bool) or not isinstance(milp_node_limit, int) or milp_node_limit < 1:
        raise SchedulerInputError(f"milp_node_limit={milp_node_limit!r}: must be a positive integer")
    if not isinstance(lengths, (list, tuple, np.ndarray)):
        raise SchedulerInputError(f"lengths: expected a list of positive integers, got {type(lengths).__name__}")
    check_fits(lengths, cluster, cost_model)
    bound = lower_bound_ms(lengths, cluster, cost_model, checked=True)
    s = np.asarray(lengths, dtype=np.int64)
    cap = cost_model.max_tokens_per_rank(cluster)
    candidates = [best_static_checked(s, cluster, cost_model, bound, "balanced")]
    candidates += _valid_peers(peer_plans, s, cluster, cost_model, cap, bound)
    if not budget.expired("longctx search (greedy, MILP, moldable)"):
        spaces = [ShapeSpace(ALL_KINDS, None, method if method == "greedy" else "greedy"),
                  ShapeSpace(("ring",), None, "ring-greedy")]
        own = plan_in_spaces(s, cluster, cost_model, bound, spaces, use_milp=method == "milp", solver=solver,
                             budget=budget, node_limit=milp_node_limit, method=method, moldable=True)
        own.predicted_step_time_ms = simulate(own, cluster, cost_model).step_time_ms
        candidates.insert(0, own)
        if method == "milp" and not budget.expired("long-document MILP"):
            found = longdoc_plan(s, cluster, cost_model, bound, own, budget=budget, solver=solver,
                                 node_limit=milp_node_limit)
            if found is not None:
                candidates.insert(1, found)
    plan = candidates[0]
    for other in candidates[1:]:  # equal up to rounding (TIE_RTOL): the earlier candidate, longctx's own first
        if other.predicted_step_time_ms < plan.predicted_step_time_ms * (1 - TIE_RTOL):
            plan = other
    if plan is not candidates[0]:
        plan.notes.append(f"kept over longctx's own search ({candidates[0].predicted_step_time_ms:.1f} ms)")
    plan.notes.append("candidates: " + ", ".join(f"{p.method}={p.predicted_step_time_ms:.1f}ms" for p in candidates))
    if budget.skipped:
        plan.notes.append(f"time limit {time_limit_s} s (wall clock) reached: skipped {budget.skipped}; "
                          "this plan may depend on machine speed")
    plan.lower_bound_ms = bound
    plan.validate(cap, cluster.ranks_per_node)
    plan.solve_time_s = time.perf_counter() - budget.started
    return plan


def _valid_peers(peer_plans: Sequence[Plan], s: np.ndarray, cluster: Cluster, cost_model: CostModel, cap: int,
                 bound: float) -> list[Plan]:
    """Copies of the peer plans that are for this step and valid here, timed by `simulate`."""
    out = []
    for peer in peer_plans:
        plan = Plan.from_dict(peer.to_dict())
        if plan.world_size != cluster.num_ranks or plan.lengths != s.tolist():
            log.warning("longctx.scheduler: peer plan %s is for another step or world size; ignored", plan.method)
            continue
        try:
            plan.validate(cap, cluster.ranks_per_node)
        except PlanInvalidError as err:
            log.warning("longctx.scheduler: peer plan %s is invalid here, ignored: %s", plan.method, err)
            continue
        plan.predicted_step_time_ms = simulate(plan, cluster, cost_model).step_time_ms
        plan.lower_bound_ms = bound
        out.append(plan)
    return out
