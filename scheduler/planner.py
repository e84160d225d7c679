"""`plan_step`: the per-step entry point the runtime calls.

Steps: check the input; compute the search's target bound; make the quick
plan (`quick.py`: the greedy's most promising candidate, list-scheduled fast),
which every call can afford, so a plan cut short by the time limit is still at
least the greedy's; make the best static DP x CP plan over the CP sizes whose
bound is below the quick plan's time (the others cannot be faster) and take any
peer plans (both are candidates, so the result is never slower than either;
the static plan's groups are built only if it wins); then, while
time remains, make the greedy's candidates over all shapes and over
ring-only shapes (the ByteScale-style space); for method "milp", add the
compact MILP's candidate, warm-started from the most promising greedy
candidate; schedule the best candidates; re-place the whole-node jobs of the
two best-estimated candidates with moldable node counts (`moldable.py`: each
job picks its node count as it is placed, filling the nodes up to a target
near the lower bound); then, for method "milp", the long-document MILP
(`longdoc.py`) re-chooses the whole-node jobs' node counts jointly with the
room left for the tail; keep the fastest plan of all; report the lower bound
over every legal shape (`lower_bound.py`). Solver trouble never
raises: the plan falls back to the greedy candidates and says why in
`plan.method` ("milp-fallback-greedy") and `plan.notes` (and the log).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from longctx.scheduler.budget import MIN_SOLVER_S, Budget
from longctx.scheduler.cluster import Cluster
from longctx.scheduler.cost_model import CostModel, default_sizes
from longctx.scheduler.errors import SchedulerInputError
from longctx.scheduler.gc_pause import gc_paused
from longctx.scheduler.greedy import estimate_candidates, greedy_candidates, schedule_best, to_waves
from longctx.scheduler.lower_bound import check_fits, lower_bound_ms, work_bound_ms
from longctx.scheduler.longdoc import longdoc_plan
from longctx.scheduler.milp import MILP_NODE_LIMIT, SOLVERS, milp_candidate
from longctx.scheduler.moldable import moldable_schedule
from longctx.scheduler.plan import Plan, PlanInvalidError
from longctx.scheduler.quick import quick_plan
from longctx.scheduler.simulator import simulate
from longctx.scheduler.static import StaticChoice, best_static_choice
from longctx.scheduler.step_lengths import StepLengths

log = logging.getLogger(__name__)

METHODS = ("milp", "greedy")
ALL_KINDS = ("ring", "ulysses", "hybrid")
#: relative difference below which two candidates' step times count as equal
TIE_RTOL = 1e-9
#: candidates (best greedy estimates first) whose whole-node jobs are re-placed as moldable
MOLDABLE_CANDIDATES = 2
#: up to this many nodes the exact bound (every legal shape, `lower_bound.all_shapes`: about 4 shapes per
#: node) comes first and is the search's target; above, the target is the bound over the planner's own
#: shapes (a few hundred) and the exact bound is computed last, when time remains (0.3 s at 2,048 nodes,
#: 3 s at 12,500). A rule on the input's size, not on time, so it never makes the plan depend on speed.
EXACT_BOUND_MAX_NODES = 1024
#: a stage's cost in units of the quick plan's (which the stage's scheduling repeats a few times):
#: the rest of the search starts only when this many quick plans' time is left, the MILP's limit keeps
#: back SCHEDULE_COST for the schedules that follow it, moldable re-placement needs MOLDABLE_COST
SEARCH_COST, SCHEDULE_COST, MOLDABLE_COST = 3.0, 2.5, 2.0
#: seconds per shape (about 4 per node) the bound over every legal shape takes, over-estimates (50 and 16 us
#: measured): with `lower_bound.MAX_EXACT` sequences weighed exactly, and with the slowest one only
EXACT_BOUND_COST_S, LONGEST_BOUND_COST_S = 8e-5, 3e-5


@dataclass(frozen=True)
class ShapeSpace:
    """Which shapes a search may use: attention kinds and group sizes (None = the default sizes)."""

    kinds: tuple[str, ...]
    sizes: tuple[int, ...] | None
    label: str


def plan_in_spaces(lengths, cluster: Cluster, cost_model: CostModel, lower_bound: float, spaces: list[ShapeSpace],
                   *, use_milp: bool, solver: str, budget: Budget, node_limit: int = MILP_NODE_LIMIT, method: str,
                   moldable: bool = False, schedule_s: float = 0.0) -> Plan:
    """Greedy candidates in every space (+ the MILP's in the first), best schedule kept.

    `moldable`: also re-place the whole-node jobs of the MOLDABLE_CANDIDATES best-estimated
    candidates with moldable node counts over the first space's kinds (`moldable.py`) and keep
    that schedule when it is faster. `schedule_s`: what one schedule of this step costs (s; the
    quick plan's time), so the MILP and moldable stages leave room for what follows them.
    """
    candidates = []
    for space in spaces:
        candidates += greedy_candidates(lengths, cluster, cost_model, lower_bound, kinds=space.kinds,
                                        sizes=space.sizes, label=space.label)
    notes = []
    if use_milp and budget.affords("compact MILP", SCHEDULE_COST * schedule_s + MIN_SOLVER_S):
        first = spaces[0]
        own = [c for c in candidates if c.label.startswith(first.label)]
        estimate_candidates(own, lengths, cluster, cost_model)
        start = min(own, key=lambda c: c.estimate_ms)
        found, status = milp_candidate(lengths, cluster, cost_model, lower_bound, start,
                                       shapes=cost_model.shapes(cluster, first.kinds, first.sizes), solver=solver,
                                       time_limit_s=budget.solver_limit_s(keep_s=SCHEDULE_COST * schedule_s),
                                       node_limit=node_limit,
                                       label=f"{first.label}-milp")
        if found is None:
            log.warning("longctx.scheduler: MILP gave no plan, using the greedy: %s", status)
            notes.append(f"fell back to greedy: {status}")
            method = f"{method}-fallback-greedy"
        else:
            notes.append(status)
            candidates.insert(0, found)
    plan, _ = schedule_best(candidates, lengths, cluster, cost_model, lower_bound, method)
    if moldable and budget.affords("moldable re-placement", MOLDABLE_COST * schedule_s):
        ranked = sorted(candidates, key=lambda c: c.estimate_ms)[:MOLDABLE_CANDIDATES]  # stable: ties keep order
        found = moldable_schedule(ranked, lengths, cluster, cost_model, lower_bound, spaces[0].kinds)
        if found is not None and found[0] < plan.predicted_step_time_ms:
            step, placed, label = found
            plan = Plan(cluster.num_ranks, [int(x) for x in lengths], to_waves(placed), method,
                        predicted_step_time_ms=step, lower_bound_ms=lower_bound,
                        notes=[f"best of {len(candidates)} candidates and moldable re-placements: {label}"])
    plan.notes = notes + plan.notes
    return plan


@gc_paused()  # its many small objects hold no cycles (`gc_pause.py`)
def plan_step(lengths: list[int], cluster: Cluster, *, cost_model: CostModel | None = None, method: str = "milp",
              solver: str = "highs", time_limit_s: float | None = 1.0, milp_node_limit: int = MILP_NODE_LIMIT,
              peer_plans: Sequence[Plan] = ()) -> Plan:
    """Plan one step's dynamic mesh for sequences of `lengths` tokens on `cluster`.

    Candidates, in order: longctx's own search (greedy shape choices, the compact MILP and
    moldable re-placement, then the long-document MILP, `longdoc.py`, for method "milp"), the
    quick plan (`quick.py`, method "greedy-quick"), the best static DP x CP plan (balanced, every
    CP size whose bound `static.static_bound_ms` is below the quick plan's time: no other can be faster,
    so when none is, static is left out and the notes say so; `static.py`) and each of `peer_plans` (plans made by other tools, e.g. megatron-core's
    BalancedCPScheduler via `longctx.peers.megatron_balanced_cp`; kept only when they pass
    `Plan.validate` with this cluster's memory and node alignment). The fastest under `simulate`
    wins (the quick plan is timed by its list schedule, which is what `simulate` computes, up to
    rounding), ties to the earlier candidate, so the plan is never slower than static or any
    valid peer plan under the cost model (up to TIE_RTOL).

    Time and determinism: `time_limit_s` bounds the wall time of the whole call, preparation
    included, in anytime order: the checks, the search's target bound, the quick plan (`quick.py`)
    and the static plan always run (with checking the returned plan: about 0.02 s at 512 ranks,
    0.2 s at 16,384, 0.8 s at 100,000 ranks and 1.6M sequences on one core: the fixed cost a
    smaller limit is overrun by); every later stage starts only when its estimated cost (a multiple of what the
    quick plan took, so it scales with the machine's speed and load) fits in the time left, less
    a reserve for finishing the plan; skipped stages are named in `plan.notes`, and the MILPs get
    only the time left. So an expired budget still returns a plan never slower than static and
    never slower than the greedy's most promising candidate. The search itself is bounded by
    deterministic work limits (a fixed list of candidates, `milp_node_limit` branch-and-bound
    nodes per MILP solve, single-threaded, fixed seed), and which bound is the search's target is
    decided by the cluster's size (`EXACT_BOUND_MAX_NODES`), never by time, so the same input
    gives the same plan on any machine unless the wall-clock limit skips or cuts a stage, which
    the notes then say ("wall clock"). `time_limit_s=None` disables the wall-clock limit: fully
    deterministic (what the determinism tests use). `plan.lower_bound_ms` is the bound over every
    legal shape, or, when the limit leaves no time for it on a large cluster, the cheaper work
    bound (`lower_bound.work_bound_ms`, also valid; the notes say so).
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
    step = StepLengths.of(check_fits(lengths, cluster, cost_model))
    s = step.lengths
    exact_first = cluster.num_nodes <= EXACT_BOUND_MAX_NODES
    sizes = search_sizes(cluster, cost_model, int(s.max(initial=0)))
    target = lower_bound_ms(s, cluster, cost_model, checked=True,
                            shapes=None if exact_first else cost_model.shapes(cluster, sizes=sizes))
    cap = cost_model.max_tokens_per_rank(cluster)
    first_label = method if method == "greedy" else "greedy"
    quick_started = time.perf_counter()
    quick = quick_plan(step, cluster, cost_model, target, kinds=ALL_KINDS, sizes=sizes, label="greedy-quick")
    schedule_s = time.perf_counter() - quick_started
    # static DP x CP: only CP sizes whose bound is below the quick plan's time can win; built into a Plan if it wins
    static = best_static_choice(step, cluster, cost_model, "balanced", beat_ms=quick.predicted_step_time_ms)
    if static is None:
        quick.notes.append("static DP x CP: no CP size's bound is below this plan's time")
    candidates = [quick] + ([] if static is None else [static])
    candidates += _valid_peers(peer_plans, s, cluster, cost_model, cap, target)
    budget.reserve_s = schedule_s  # finishing (timing and checking the plan) costs about one schedule
    if budget.affords("longctx search (greedy, MILP, moldable)", SEARCH_COST * schedule_s):
        spaces = [ShapeSpace(ALL_KINDS, sizes, first_label), ShapeSpace(("ring",), sizes, "ring-greedy")]
        own = plan_in_spaces(s, cluster, cost_model, target, spaces, use_milp=method == "milp", solver=solver,
                             budget=budget, node_limit=milp_node_limit, method=method, moldable=True,
                             schedule_s=schedule_s)
        own.predicted_step_time_ms = simulate(own, cluster, cost_model).step_time_ms
        candidates.insert(0, own)
        if method == "milp" and not budget.expired("long-document MILP"):
            found = longdoc_plan(s, cluster, cost_model, target, own, budget=budget, solver=solver,
                                 node_limit=milp_node_limit)
            if found is not None:
                candidates.insert(1, found)
    plan = candidates[0]
    for other in candidates[1:]:  # equal up to rounding (TIE_RTOL): the earlier candidate, longctx's own first
        if other.predicted_step_time_ms < plan.predicted_step_time_ms * (1 - TIE_RTOL):
            plan = other
    if isinstance(plan, StaticChoice):
        plan = plan.plan(step, cluster, target)
    if plan is not candidates[0]:
        plan.notes.append(f"kept over longctx's own search ({candidates[0].predicted_step_time_ms:.1f} ms)")
    plan.notes.append("candidates: " + ", ".join(f"{p.method}={p.predicted_step_time_ms:.1f}ms" for p in candidates))
    plan.lower_bound_ms = _reported_bound(s, cluster, cost_model, target, exact_first, budget, plan.notes)
    if budget.skipped:
        plan.notes.append(f"time limit {time_limit_s} s (wall clock) reached: skipped {budget.skipped}; "
                          "this plan may depend on machine speed")
    plan.validate(cap, cluster.ranks_per_node)
    plan.solve_time_s = budget.elapsed_s()
    return plan


def search_sizes(cluster: Cluster, cost_model: CostModel, longest: int) -> tuple[int, ...] | None:
    """Group sizes the search uses: None (the cost model's default sizes) when one of them holds the longest
    sequence (`longest` tokens), else the defaults and the smallest legal size that does (e.g. 5 nodes of
    1 rank, which the defaults 1, 2, 3, 4, 6 x 8^k nodes skip)."""
    defaults = default_sizes(cluster.ranks_per_node, cluster.num_ranks)
    need = cost_model.min_group_size(longest, cluster) if longest else 1
    if need <= max(defaults):
        return None
    rpn = cluster.ranks_per_node
    return defaults + (need if need <= rpn else -(-need // rpn) * rpn,)


def _reported_bound(s: np.ndarray, cluster: Cluster, cost_model: CostModel, target: float, exact: bool,
                    budget: Budget, notes: list[str]) -> float:
    """The bound over every legal shape: `target` when it is that (`exact`); else computed now, with
    MAX_EXACT sequences weighed exactly when the time left affords it, else with the slowest one only
    (looser, still valid), else the work bound; the weaker ones are noted."""
    shapes = 4 * cluster.num_nodes  # about as many as `lower_bound.all_shapes`
    if exact:
        return target
    if budget.affords("lower bound over every legal shape", EXACT_BOUND_COST_S * shapes):
        return lower_bound_ms(s, cluster, cost_model, checked=True)
    if budget.affords("lower bound's time term", LONGEST_BOUND_COST_S * shapes):
        notes.append("lower bound: over every legal shape with only the slowest sequence weighed exactly")
        return lower_bound_ms(s, cluster, cost_model, checked=True, max_exact=1)
    notes.append(f"lower bound: the work bound only (no time for the bound over every legal shape; over the "
                 f"planner's shapes it is {target:.1f} ms)")
    return work_bound_ms(s, cluster, cost_model)


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
