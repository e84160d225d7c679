"""`plan_step`: the per-step entry point the runtime calls.

Steps: check the input; compute the lower bound; build the greedy plan over
all shapes; for method "milp", solve the compact MILP (warm-started from the
greedy) and turn it into a schedule; also build the ring-only greedy
(ByteScale-style) schedule; keep the fastest candidate under the simulator,
ties to the earlier one in that order. Solver trouble never raises: the plan
falls back to the greedy and says why in `plan.method` and `plan.notes` (and
the log).
"""
from __future__ import annotations

import logging
import time

from longctx.scheduler.baselines import bytescale_plan
from longctx.scheduler.cluster import Cluster
from longctx.scheduler.cost_model import CostModel
from longctx.scheduler.errors import SchedulerInputError
from longctx.scheduler.greedy import greedy_plan
from longctx.scheduler.lower_bound import check_fits, lower_bound_ms
from longctx.scheduler.milp import SOLVERS, milp_plan
from longctx.scheduler.plan import Plan
from longctx.scheduler.simulator import simulate

log = logging.getLogger(__name__)

METHODS = ("milp", "greedy")


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
    if not isinstance(lengths, (list, tuple)):
        raise SchedulerInputError(f"lengths: expected a list of positive integers, got {type(lengths).__name__}")
    check_fits(lengths, cluster, cost_model)
    bound = lower_bound_ms(lengths, cluster, cost_model)
    greedy = greedy_plan(lengths, cluster, cost_model, bound, method="greedy")
    candidates: list[Plan] = []
    notes: list[str] = []
    chosen_method = method
    if method == "milp":
        shapes = cost_model.shapes(cluster)
        milp, reason = milp_plan(lengths, cluster, cost_model, bound, greedy, shapes=shapes, solver=solver,
                                 time_limit_s=time_limit_s)
        if milp is None:
            log.warning("longctx.scheduler: MILP unavailable, using the greedy plan: %s", reason)
            notes.append(f"fell back to greedy: {reason}")
            chosen_method = "greedy-fallback"
        else:
            candidates.append(milp)
            notes.extend(milp.notes)
    candidates += [greedy, bytescale_plan(lengths, cluster, cost_model, bound)]
    best = min(enumerate(candidates), key=lambda item: (item[1].predicted_step_time_ms, item[0]))[1]
    notes.append("candidates: " + ", ".join(f"{p.method}={p.predicted_step_time_ms:.1f}ms" for p in candidates)
                 + f"; kept {best.method}")
    plan = Plan(cluster.num_ranks, best.lengths, best.waves, chosen_method, lower_bound_ms=bound, notes=notes)
    plan.predicted_step_time_ms = simulate(plan, cluster, cost_model).step_time_ms
    plan.validate(cost_model.max_tokens_per_rank(cluster), cluster.ranks_per_node)
    plan.solve_time_s = time.perf_counter() - started
    return plan
