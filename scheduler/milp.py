"""Compact MILP that chooses a group shape for every long sequence.

Model (PuLP; HiGHS by default, CBC as the alternative):

- Short sequences (fitting one rank and taking at most `SHORT_FRACTION` of the
  greedy's smallest target step time alone, or beyond the greedy's MAX_LONG
  slowest and not slower alone than the bound: `greedy.long_floor_ms`) run
  locally; they only add their work to the ranks.
- Long sequences are bucketed by length (geometric buckets, ratio
  `BUCKET_RATIO`); a bucket's time on a shape is its longest member's (so a
  plan that meets the model meets it for every member).
- Per bucket b, the candidate shapes k are the Pareto front of (time, work)
  that fit in memory, plus the shapes the start gives its members. Integer ``y[b,k]`` counts the bucket's sequences on
  shape k (sum_k y[b,k] = n_b); binary ``z[b,k]`` marks a used pair whose time
  exceeds the greedy's smallest target, forcing ``time[b,k] <= M`` — and,
  for a group of at most half the cluster, ``time[b,k] + S <= M`` where S is
  the time of the groups over half the cluster (they exclude it and each other).
- Area: short work + sum y*size*time <= N*M (rank-ms).
- Concurrency: at most j groups larger than N/(j+1) ranks run at once, so
  sum over those of y*time <= j*M, for j = 1..`CONCURRENCY_LEVELS`.
- Objective: minimise the step time M, tie-broken towards less total work.

The solution is a `Candidate` that the greedy's list scheduler turns into a
schedule (largest groups first on the earliest-free ranks, then LPT of the
local work), which also produces the waves. The greedy's shape choice is a feasible
solution of the model and is given to the solver as its start (HiGHS:
`setSolution`; CBC: `warmStart`).

Determinism: solver runs are single-threaded with a fixed seed and stop after
`node_limit` branch-and-bound nodes (a work limit, `MILP_NODE_LIMIT` by
default), so the same input gives the same incumbent on any machine. The
wall-clock `time_limit_s` is only a safety net: when it stops the solver
first, the status says "time limit" and the result may depend on machine speed.
"""
from __future__ import annotations

import functools
import logging
import math
import os
import sys
import warnings
from dataclasses import dataclass

import numpy as np
import pulp

from longctx.scheduler.cluster import Cluster
from longctx.scheduler.cost_model import CostModel, GroupShape
from longctx.scheduler.errors import SchedulerInputError
from longctx.scheduler.greedy import LOCAL, Candidate, long_floor_ms, make_candidate, targets_ms
from longctx.scheduler.options import OptionTable

log = logging.getLogger(__name__)

SOLVERS = ("highs", "cbc")
#: branch-and-bound nodes per MILP solve: the deterministic work limit
MILP_NODE_LIMIT = 200
SHORT_FRACTION = 0.05
BUCKET_RATIO = 1.1
CONCURRENCY_LEVELS = 4
WORK_TIE_BREAK = 1e-6


class SolverUnavailable(RuntimeError):
    """The requested solver is not installed."""


@dataclass(frozen=True)
class MilpOutcome:
    """Shape index per long sequence (into `shapes`), or None with the reason."""

    choice: dict[int, GroupShape] | None
    status: str
    objective_ms: float | None


@functools.lru_cache(maxsize=1)
def _highs_banner_shown() -> bool:
    """Create the process's first HiGHS instance with file descriptor 1 on /dev/null.

    HiGHS writes its copyright banner to the C-level stdout when a process's
    first instance is created, before `msg=False` can reach it; in training it
    lands in the middle of the progress bar. Later instances print nothing.
    """
    import highspy

    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
            highspy.Highs()
    finally:
        os.dup2(saved, 1)
        os.close(saved)
    return True


class _HighsWithStart(pulp.HiGHS):
    """PuLP's HiGHS interface plus a MIP start taken from the variables' initial values."""

    def buildSolverModel(self, lp):  # noqa: N802 (PuLP's name)
        super().buildSolverModel(lp)
        variables = lp.variables()
        if all(v.varValue is not None for v in variables):
            import highspy

            start = highspy.HighsSolution()
            start.col_value = [float(v.varValue) for v in variables]
            start.value_valid = True
            lp.solverModel.setSolution(start)

    def findSolutionValues(self, lp):  # noqa: N802 (PuLP's name)
        """PuLP's mapping, plus HiGHS's node-limit stop (kSolutionLimit) with an incumbent as a solution."""
        import highspy

        model = lp.solverModel
        if model.getModelStatus() != highspy.HighsModelStatus.kSolutionLimit:
            return super().findSolutionValues(lp)
        if model.getInfo().primal_solution_status != 2:  # 2: feasible
            return pulp.LpStatusNotSolved, pulp.LpSolutionNoSolutionFound
        values = list(model.getSolution().col_value)
        for var in lp.variables():
            var.varValue = values[var.index]
        return pulp.LpStatusOptimal, pulp.LpSolutionIntegerFeasible


def make_solver(name: str, time_limit_s: float | None, node_limit: int = MILP_NODE_LIMIT, gap_rel: float | None = None):
    """A PuLP solver by name, stopping after `node_limit` nodes or `time_limit_s` seconds (None: no
    wall-clock limit) or, given `gap_rel`, once the incumbent is within that relative gap of the best
    bound; SchedulerInputError if unknown, SolverUnavailable if not installed."""
    if name not in SOLVERS:
        raise SchedulerInputError(f"solver={name!r}: choose one of {list(SOLVERS)}")
    if name == "highs":
        _highs_banner_shown()
        solver = _HighsWithStart(msg=False, timeLimit=time_limit_s, threads=1, random_seed=0,
                                 mip_max_nodes=node_limit, gapRel=gap_rel)
    else:
        with warnings.catch_warnings():  # PuLP 3.3 deprecates the bundled CBC; it is still the one shipped
            warnings.simplefilter("ignore", DeprecationWarning)
            solver = pulp.PULP_CBC_CMD(msg=False, timeLimit=time_limit_s, threads=1, warmStart=True, gapRel=gap_rel,
                                       options=["randomSeed 1", "randomCbcSeed 1", f"maxNodes {node_limit}"])
    if not solver.available():
        raise SolverUnavailable(f"solver {name!r} ({type(solver).__name__}) is not available on this machine")
    return solver


def _buckets(lengths: np.ndarray, ids: np.ndarray) -> list[np.ndarray]:
    """Long sequence ids grouped by length, longest bucket first, members longest first."""
    order = ids[np.lexsort((ids, -lengths[ids]))]
    keys = np.floor(np.log(lengths[order]) / math.log(BUCKET_RATIO)).astype(np.int64)
    cuts = np.flatnonzero(np.diff(keys)) + 1
    return np.split(order, cuts)


def _pareto(times: np.ndarray, work: np.ndarray) -> list[int]:
    """Indices on the (time, work) Pareto front, fastest first, ties to the earlier index."""
    front, best_work = [], np.inf
    for k in np.lexsort((np.arange(len(times)), work, times)):
        if np.isfinite(times[k]) and work[k] < best_work:
            front.append(int(k))
            best_work = work[k]
    return front


def solve_shapes(lengths, cluster: Cluster, cost_model: CostModel, lower_bound: float,
                 start: dict[int, GroupShape], *, shapes: list[GroupShape], solver: str,
                 time_limit_s: float | None, node_limit: int = MILP_NODE_LIMIT) -> MilpOutcome:
    """Solve the model; `start` maps long sequence ids to the greedy's shapes (the MIP start)."""
    s = np.asarray(lengths, dtype=np.float64)
    n = cluster.num_ranks
    cap = cost_model.max_tokens_per_rank(cluster)
    local_ms = cost_model.time_ms(s, LOCAL, cluster)
    smallest_target = min(targets_ms(lengths, cluster, cost_model, lower_bound, shapes))
    long_mask = (s > cap) | (local_ms > max(SHORT_FRACTION * smallest_target, long_floor_ms(local_ms, lower_bound)))
    short_work = float(local_ms[~long_mask].sum())
    buckets = _buckets(s, np.flatnonzero(long_mask))
    if not buckets:
        return MilpOutcome({}, "no long sequences", short_work / n)
    table = OptionTable.build(s[np.flatnonzero(long_mask)], shapes, cluster, cost_model)
    column = {int(i): j for j, i in enumerate(np.flatnonzero(long_mask))}

    prob = pulp.LpProblem("longctx_shapes", pulp.LpMinimize)
    step = prob.add_variable("step_ms", lower_bound, None)
    area_terms, conc_terms = [], {j: [] for j in range(1, CONCURRENCY_LEVELS + 1)}
    pairs = []  # (bucket, shape index, y var)
    switches = {}  # (bucket, shape index) -> z var, for pairs that need time <= step
    step_rows = []  # (expression, multiplier): expression <= multiplier * step
    timed = []
    index_of = {shape: k for k, shape in enumerate(shapes)}
    for b, members in enumerate(buckets):
        cols = [column[int(i)] for i in members]
        worst = table.time_ms[:, cols].max(axis=1)  # the longest member's time per shape
        mean = table.time_ms[:, cols].mean(axis=1)
        ys = []
        started = {index_of[start.get(i, LOCAL)] for i in members.tolist() if start.get(i, LOCAL) in index_of}
        front = set(_pareto(worst, worst * np.array([sh.size for sh in shapes])))
        for k in sorted(front | {k for k in started if np.isfinite(worst[k])}):
            y = prob.add_variable(f"y_{b}_{k}", 0, len(members), cat="Integer")
            ys.append(y)
            pairs.append((b, k, y))
            size = shapes[k].size
            area_terms.append(float(mean[k] * size) * y)
            for j in conc_terms:
                if size * (j + 1) > n:
                    conc_terms[j].append(float(mean[k]) * y)
            if worst[k] > smallest_target:
                z = switches[(b, k)] = prob.add_variable(f"z_{b}_{k}", 0, 1, cat="Integer")
                prob += y <= len(members) * z
                timed.append((size, float(worst[k]), z))
        prob += pulp.lpSum(ys) == len(members)
    serial = pulp.lpSum(conc_terms[1])  # groups over half the cluster run one after another
    for size, worst_ms, z in timed:
        step_rows.append((worst_ms * z + (serial if 2 * size <= n else 0), 1))
    step_rows.append((short_work + pulp.lpSum(area_terms), n))
    step_rows.extend((pulp.lpSum(terms), j) for j, terms in conc_terms.items() if terms)
    for expression, multiplier in step_rows:
        prob += expression <= multiplier * step
    prob += step + WORK_TIE_BREAK * pulp.lpSum(area_terms) / n

    _set_start(buckets, pairs, switches, step_rows, shapes, start, step)
    solver_obj = make_solver(solver, time_limit_s, node_limit)
    try:
        prob.solve(solver_obj)
    except pulp.PulpSolverError as err:
        return MilpOutcome(None, f"solver error: {err}", None)
    status = pulp.LpStatus[prob.status]
    values = {(b, k): y.value() for b, k, y in pairs}
    if prob.status != pulp.LpStatusOptimal or any(v is None for v in values.values()):
        return MilpOutcome(None, f"no solution (status {status})", None)
    choice: dict[int, GroupShape] = {}
    for b, members in enumerate(buckets):
        counts = sorted(((shapes[k].size, k, int(round(v))) for (bb, k), v in values.items() if bb == b and v > 0.5),
                        key=lambda t: (-t[0], t[1]))
        queue = list(members)
        for _, k, count in counts:
            for i in queue[:count]:
                choice[int(i)] = shapes[k]
            queue = queue[count:]
        for i in queue:  # rounding slack: keep the greedy's shape
            choice[int(i)] = start.get(int(i), LOCAL)
    return MilpOutcome(choice, limit_status(prob, solver, status), step.value())


def limit_status(prob: pulp.LpProblem, solver: str, status: str) -> str:
    """The solve's status, naming a work (node) or wall-clock limit that stopped it (HiGHS only)."""
    if solver != "highs":
        return status
    name = prob.solverModel.getModelStatus().name
    if name == "kTimeLimit":
        return "wall-clock time limit reached, best incumbent used"
    if name == "kSolutionLimit":
        return "node limit reached, best incumbent used"
    return status


def _set_start(buckets, pairs, switches, step_rows, shapes, start: dict[int, GroupShape], step) -> None:
    """Initial values from the greedy's shapes; skipped when a greedy shape is not a candidate."""
    counts: dict[tuple[int, GroupShape], int] = {}
    for b, members in enumerate(buckets):
        for i in members.tolist():
            key = (b, start.get(i, LOCAL))
            counts[key] = counts.get(key, 0) + 1
    known = {(b, shapes[k]) for b, k, _ in pairs}
    if any(key not in known for key in counts):
        return
    for b, k, y in pairs:
        count = counts.get((b, shapes[k]), 0)
        y.setInitialValue(count)
        if (b, k) in switches:
            switches[(b, k)].setInitialValue(1 if count else 0)
    # the start's step time: the tightest of the rows bounding it, so the start is feasible
    needed = max(pulp.value(expression) / multiplier for expression, multiplier in step_rows)
    step.setInitialValue(max(needed * (1 + 1e-9), step.lowBound))


def milp_candidate(lengths, cluster: Cluster, cost_model: CostModel, lower_bound: float, start: Candidate, *,
                   shapes: list[GroupShape], solver: str, time_limit_s: float | None,
                   node_limit: int = MILP_NODE_LIMIT, label: str = "milp") -> tuple[Candidate | None, str]:
    """The MILP's shape choice as a candidate, warm-started from `start`; (None, reason) on solver trouble."""
    start_shapes = {job.sequences[0]: job.shape for job in start.jobs}
    try:
        outcome = solve_shapes(lengths, cluster, cost_model, lower_bound, start_shapes, shapes=shapes,
                               solver=solver, time_limit_s=time_limit_s, node_limit=node_limit)
    except SolverUnavailable as err:
        return None, str(err)
    if outcome.choice is None:
        return None, f"milp ({solver}): {outcome.status}"
    s = np.asarray(lengths, dtype=np.float64)
    multi = {i: shape for i, shape in outcome.choice.items() if shape.size > 1}
    times = {i: float(cost_model.time_ms([s[i]], shape, cluster)[0]) for i, shape in multi.items()}
    status = f"milp ({solver}) {outcome.status}; model step {outcome.objective_ms:.1f} ms"
    log.debug("%s", status)
    return make_candidate(label, multi, times, len(s)), status
