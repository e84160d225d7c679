"""`plan_step`: the per-step entry point the runtime calls.

Steps: check the input; compute the lower bound; make the greedy's candidates
over all shapes and over ring-only shapes (the ByteScale-style space); for
method "milp", add the compact MILP's candidate, warm-started from the most
promising greedy candidate; schedule the best candidates; re-place the
whole-node jobs of the two best-estimated candidates with moldable node
counts (`moldable.py`: each job picks its node count as it is placed, filling
the nodes up to a target near the lower bound); keep the fastest schedule.
Solver trouble never raises: the plan falls back to the greedy candidates and says why in `plan.method` ("greedy-fallback") and
`plan.notes` (and the log).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np

from longctx.scheduler.cluster import Cluster
from longctx.scheduler.cost_model import CostModel
from longctx.scheduler.errors import SchedulerInputError
from longctx.scheduler.greedy import estimate_candidates, greedy_candidates, schedule_best, to_waves
from longctx.scheduler.lower_bound import check_fits, lower_bound_ms
from longctx.scheduler.milp import SOLVERS, milp_candidate
from longctx.scheduler.moldable import moldable_schedule
from longctx.scheduler.plan import Plan
from longctx.scheduler.simulator import simulate

log = logging.getLogger(__name__)

METHODS = ("milp", "greedy")
ALL_KINDS = ("ring", "ulysses", "hybrid")
#: candidates (best greedy estimates first) whose whole-node jobs are re-placed as moldable
MOLDABLE_CANDIDATES = 2


@dataclass(frozen=True)
class ShapeSpace:
    """Which shapes a search may use: attention kinds and group sizes (None = the default sizes)."""

    kinds: tuple[str, ...]
    sizes: tuple[int, ...] | None
    label: str


def plan_in_spaces(lengths, cluster: Cluster, cost_model: CostModel, lower_bound: float, spaces: list[ShapeSpace],
                   *, use_milp: bool, solver: str, time_limit_s: float, method: str, moldable: bool = False) -> Plan:
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
    if use_milp:
        first = spaces[0]
        own = [c for c in candidates if c.label.startswith(first.label)]
        estimate_candidates(own, lengths, cluster, cost_model)
        start = min(own, key=lambda c: c.estimate_ms)
        found, status = milp_candidate(lengths, cluster, cost_model, lower_bound, start,
                                       shapes=cost_model.shapes(cluster, first.kinds, first.sizes), solver=solver,
                                       time_limit_s=time_limit_s, label=f"{first.label}-milp")
        if found is None:
            log.warning("longctx.scheduler: MILP gave no plan, using the greedy: %s", status)
            notes.append(f"fell back to greedy: {status}")
            method = f"{method}-fallback-greedy"
        else:
            notes.append(status)
            candidates.insert(0, found)
    plan, _ = schedule_best(candidates, lengths, cluster, cost_model, lower_bound, method)
    if moldable:
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
              solver: str = "highs", time_limit_s: float = 1.0) -> Plan:
    """Plan one step's dynamic mesh for sequences of `lengths` tokens on `cluster`."""
    started = time.perf_counter()
    cost_model = cost_model or CostModel()
    if method not in METHODS:
        raise SchedulerInputError(f"method={method!r}: choose one of {list(METHODS)}")
    if solver not in SOLVERS:
        raise SchedulerInputError(f"solver={solver!r}: choose one of {list(SOLVERS)}")
    if isinstance(time_limit_s, bool) or not isinstance(time_limit_s, (int, float)) or time_limit_s < 0:
        raise SchedulerInputError(f"time_limit_s={time_limit_s!r}: must be a number of seconds >= 0")
    if not isinstance(lengths, (list, tuple, np.ndarray)):
        raise SchedulerInputError(f"lengths: expected a list of positive integers, got {type(lengths).__name__}")
    check_fits(lengths, cluster, cost_model)
    bound = lower_bound_ms(lengths, cluster, cost_model, checked=True)
    spaces = [ShapeSpace(ALL_KINDS, None, method if method == "greedy" else "greedy"),
              ShapeSpace(("ring",), None, "ring-greedy")]
    plan = plan_in_spaces(lengths, cluster, cost_model, bound, spaces, use_milp=method == "milp", solver=solver,
                          time_limit_s=time_limit_s, method=method, moldable=True)
    plan.predicted_step_time_ms = simulate(plan, cluster, cost_model).step_time_ms
    plan.validate(cost_model.max_tokens_per_rank(cluster), cluster.ranks_per_node)
    plan.solve_time_s = time.perf_counter() - started
    return plan
