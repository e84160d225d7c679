"""Long-document MILP: node counts of the whole-node jobs chosen jointly with the tail's room.

On steps with a few documents of 150K-1M tokens, the greedy fixes each long
document's group first and list-schedules the rest; the nodes then finish up
to one job's length apart and the short documents (the tail) cannot even them
out. This model chooses every whole-node job's node count together with how
the jobs share the nodes, for a target step time M (ms):

- jobs: the sequences that `start` (the plan to improve) runs on groups of
  more than one node, or, in a second model (`COLUMN_SIZES`), of at least one
  node (a one-node job of a quarter of M placed after the columns can end past
  them; in a column it gets a slot: bimodal at 512 ranks 2.2% -> 0.8% above the
  bound, while on the long-context mix at 4,096 ranks the first model is
  better), bucketed by length (ratio `BUCKET_RATIO`; a bucket's time is its
  longest member's, so the slot constraints hold for every member);
- a column is k whole nodes running a few jobs one after another; its
  pattern (`PATTERNS`: every way to write 1 as a sum of at most `MAX_SLOTS`
  of `SLOT_FRACTIONS`, tenths, quarters and thirds, e.g. (0.4, 0.3, 0.3))
  gives each slot a fraction f of M, and the fractions sum to 1, so any jobs
  that fit their slots fit in M. Fine fractions matter: a job slightly over a
  coarse slot (0.26 M for a 1/4 slot) would need the next coarser slot or
  more nodes, and with only halves, thirds and quarters the 4,096-rank
  long-context mix was infeasible below 1.03 x the bound for that alone;
- per bucket b and fraction f the width is the fewest nodes k_f(b)
  (`moldable.node_counts`) on which the bucket takes at most f*M (fastest kind
  on k nodes, `moldable.node_time_table`);
- integer ``n[b,f]``: jobs of bucket b in f-slots (sum_f n[b,f] = bucket size);
  integer ``c[k,p]``: columns of k nodes with pattern p (only patterns with
  at least one fraction some job takes on k nodes); per k and f the slots
  cover the jobs: ``sum_p count_p(f) * c[k,p] >= sum of n[b,f] with k_f(b) = k``;
- nodes: ``sum k*c[k,p] <= nodes``;
- area: ``rpn * sum n[b,f]*k_f(b)*tmean[b,k_f(b)] + tail work <= ranks * M``
  (tmean: the bucket members' mean time, the work the bucket's jobs do on
  average; the built schedule is timed exactly), the tail work being
  everything `start` runs inside one node (rank-ms), which fills the
  columns' spare time and the free nodes;
- objective: least node-ms of the long jobs (the most room for the tail), then
  fewest columns; the solve stops at a 1% relative gap (`GAP_REL`).

Targets M are tried at `TARGET_FACTORS` times the lower bound, smallest first,
until `BUILT_TARGETS` feasible ones became schedules or the best schedule so
far already ends by the next target: every column's jobs run one after
another on k consecutive nodes, then `start`'s in-node groups and local
sequences fill the rest, both by the greedy's `list_schedule` (earliest-free
ranks) and by `tail_fit.best_fit_schedule` (in-node jobs best fit against
the bound and against M, then local LPT), the fastest kept. On the 4,096-rank
long-context mix the best fit is what brings the step from ~5% to ~1% above
the bound: list scheduling puts the last one-node jobs (a quarter of M each)
on nodes already nearly full. The fastest schedule of both models is returned
when it beats `start`. The model is small (a few integers per bucket and per width; ~0.3 s
per target at 4,096 ranks). It is not warm-started: the greedy's node counts
rarely fit the slot fractions. Deterministic: single-threaded HiGHS/CBC with
a node limit (`milp.MILP_NODE_LIMIT`), fixed seed, ties by index.
"""
from __future__ import annotations

import logging
from itertools import combinations_with_replacement

import numpy as np
import pulp

from longctx.scheduler.budget import Budget
from longctx.scheduler.cluster import Cluster
from longctx.scheduler.cost_model import CostModel
from longctx.scheduler.greedy import LOCAL, Job, _Placed, list_schedule, to_waves
from longctx.scheduler.milp import MILP_NODE_LIMIT, SolverUnavailable, limit_status, make_solver
from longctx.scheduler.moldable import node_counts, node_time_table
from longctx.scheduler.plan import Plan
from longctx.scheduler.simulator import group_times_ms, simulate
from longctx.scheduler.tail_fit import best_fit_schedule

log = logging.getLogger(__name__)

#: target step times tried, as multiples of the lower bound (smallest first)
TARGET_FACTORS = (1.0, 1.01, 1.02, 1.03, 1.04, 1.05, 1.06, 1.08)
#: feasible targets turned into complete schedules
BUILT_TARGETS = 4
#: slot lengths a column may use, as fractions of the target M: tenths, quarters and thirds
SLOT_FRACTIONS = tuple(sorted({i / 10 for i in range(1, 11)} | {0.25, 0.75, 1 / 3, 2 / 3}, reverse=True))
#: most jobs one column runs one after another
MAX_SLOTS = 4


def slot_patterns(fractions: tuple[float, ...], max_slots: int) -> tuple[tuple[float, ...], ...]:
    """Every multiset of at most `max_slots` of `fractions` summing to 1 (a full column), largest first."""
    found = {combo for n in range(1, max_slots + 1) for combo in combinations_with_replacement(fractions, n)
             if abs(sum(combo) - 1.0) < 1e-9}
    return tuple(sorted(found, reverse=True))


#: a column of k nodes runs jobs one after another whose times fit these fractions of M
PATTERNS = slot_patterns(SLOT_FRACTIONS, MAX_SLOTS)
FRACTIONS = tuple(sorted({f for pattern in PATTERNS for f in pattern}, reverse=True))
#: length ratio of one bucket of long documents
BUCKET_RATIO = 1.03
#: columns hold the start plan's jobs on groups of at least this many nodes (one model each)
COLUMN_SIZES = (2, 1)
#: relative MIP gap at which a target's solve stops (any solution meeting the target is usable)
GAP_REL = 0.01
#: tie-break weight of one column (in units of node-ms at the target) relative to the node-ms objective
COLUMN_WEIGHT = 1e-3


def _split(plan: Plan, cluster: Cluster, cost_model: CostModel, column_size: int):
    """(column sequence ids: those on groups of at least `column_size` ranks, in-node jobs, local
    sequence ids, tail work rank-ms) of `plan`."""
    durations = group_times_ms(plan, cluster, cost_model)
    node_ids, in_node, local_ids = [], [], []
    tail_work = 0.0
    for (_, group), duration in zip(plan.groups(), durations):
        size = len(group.ranks)
        if size >= column_size:
            node_ids.extend(group.sequences)
            continue
        tail_work += size * duration
        if size > 1:
            times = cost_model.time_ms([plan.lengths[i] for i in group.sequences], group.shape, cluster)
            in_node.extend(Job(group.shape, (i,), float(t)) for i, t in zip(group.sequences, times.tolist()))
        else:
            local_ids.extend(group.sequences)
    in_node.sort(key=lambda job: (-job.shape.size, -job.duration_ms, job.sequences))
    return sorted(node_ids), in_node, sorted(local_ids), tail_work


def _buckets(lengths: np.ndarray) -> list[np.ndarray]:
    """Job indices grouped by length (ratio BUCKET_RATIO), longest first, members longest first."""
    order = np.lexsort((np.arange(len(lengths)), -lengths))
    keys = np.floor(np.log(lengths[order]) / np.log(BUCKET_RATIO)).astype(np.int64)
    return np.split(order, np.flatnonzero(np.diff(keys)) + 1)


def solve_columns(times: np.ndarray, counts: np.ndarray, buckets: list[np.ndarray], cluster: Cluster,
                  tail_work: float, target_ms: float, *, solver: str, time_limit_s: float | None,
                  node_limit: int) -> tuple[dict[tuple[int, int], list[list[int]]], str] | None:
    """Columns meeting `target_ms`, or None (infeasible or no solution).

    `times` [counts, jobs] ms on k = counts[row] nodes. Returns ({(row, pattern index): jobs per
    slot fraction, in the pattern's order}, status).
    """
    nodes, rpn = cluster.num_nodes, cluster.ranks_per_node
    prob = pulp.LpProblem("longctx_long_documents", pulp.LpMinimize)
    options = []  # (bucket, fraction, row, n var)
    for b, members in enumerate(buckets):
        worst = times[:, members].max(axis=1)
        mine = []
        for fraction in FRACTIONS:
            fits = np.flatnonzero(worst <= target_ms * fraction)
            if len(fits) == 0:
                continue
            row = int(fits[np.argmin(counts[fits])])
            var = prob.add_variable(f"n_{b}_{fraction:.3f}", 0, len(members), cat="Integer")
            options.append((b, fraction, row, var))
            mine.append(var)
        if not mine:
            return None
        prob += pulp.lpSum(mine) == len(members)
    rows = sorted({row for *_, row, _ in options})
    usable = {(f, row) for _, f, row, _ in options}  # (fraction, width) some job may take
    columns = {(row, p): prob.add_variable(f"c_{row}_{p}", 0, nodes // int(counts[row]), cat="Integer")
               for row in rows for p, pattern in enumerate(PATTERNS) if any((f, row) in usable for f in pattern)}
    for fraction, row in sorted(usable):
        prob += pulp.lpSum(pattern.count(fraction) * columns[(row, p)] for p, pattern in enumerate(PATTERNS)
                           if (row, p) in columns) >= pulp.lpSum(var for _, f, r, var in options
                                                                  if (f, r) == (fraction, row))
    prob += pulp.lpSum(int(counts[row]) * c for (row, _), c in columns.items()) <= nodes
    node_ms = pulp.lpSum(float(counts[row] * times[row, buckets[b]].mean()) * var for b, _, row, var in options)
    prob += rpn * node_ms + tail_work <= cluster.num_ranks * target_ms
    prob += node_ms + COLUMN_WEIGHT * target_ms * pulp.lpSum(columns.values())
    prob.solve(make_solver(solver, time_limit_s, node_limit, gap_rel=GAP_REL))
    if prob.status != pulp.LpStatusOptimal or any(var.value() is None for *_, var in options):
        return None
    filled = _fill_columns(options, columns, buckets)
    return None if filled is None else (filled, limit_status(prob, solver, "optimal"))


def _fill_columns(options, columns, buckets) -> dict[tuple[int, int], list[list[int]]] | None:
    """Jobs into the solved columns' slots of their fraction and width; {(row, pattern index): jobs per
    column}, or None when integrality tolerance left a job without a slot."""
    wanted: dict[tuple[float, int], list[int]] = {}  # (fraction, row) -> jobs, longest first
    for b, members in enumerate(buckets):
        queue = members.tolist()
        for bb, fraction, row, var in options:
            if bb == b:
                take = int(round(var.value()))
                wanted.setdefault((fraction, row), []).extend(queue[:take])
                queue = queue[take:]
    out: dict[tuple[int, int], list[list[int]]] = {}
    for (row, p), c in columns.items():
        for _ in range(int(round(c.value() or 0))):
            jobs = [wanted[(f, row)].pop(0) for f in PATTERNS[p] if wanted.get((f, row))]
            if jobs:
                out.setdefault((row, p), []).append(jobs)
    return None if any(wanted.values()) else out


def build_columns(ids: list[int], columns: dict[tuple[int, int], list[list[int]]], times: np.ndarray,
                  counts: np.ndarray, shapes, cluster: Cluster) -> tuple[np.ndarray, list[_Placed]]:
    """Every column's jobs one after another on k consecutive nodes, widest columns first;
    (grid [nodes, rpn] rank free times ms, groups)."""
    rpn = cluster.ranks_per_node
    grid = np.zeros((cluster.num_nodes, rpn))
    placed: list[_Placed] = []
    node = 0
    for (row, _), jobs_per_column in sorted(columns.items(), key=lambda item: (-counts[item[0][0]], item[0][1])):
        k = int(counts[row])
        for jobs in jobs_per_column:
            clock = 0.0
            for j in jobs:
                placed.append(_Placed(clock, list(range(node * rpn, (node + k) * rpn)), shapes[row][j], [ids[j]]))
                clock += float(times[row, j])
            grid[node:node + k] = clock
            node += k
    return grid, placed


def longdoc_plan(lengths: np.ndarray, cluster: Cluster, cost_model: CostModel, lower_bound: float, start: Plan, *,
                 budget: Budget, solver: str, node_limit: int = MILP_NODE_LIMIT) -> Plan | None:
    """A plan from the column MILP that beats `start` (a plan of this step), else None.

    The columns take `start`'s jobs larger than a node and, in a second model, its one-node jobs
    too (`COLUMN_SIZES`); the fastest schedule of both is kept."""
    s = np.asarray(lengths, dtype=np.float64)
    best, statuses = None, []
    for column_size in COLUMN_SIZES:
        found = _columns_schedule(s, cluster, cost_model, lower_bound, start, column_size * cluster.ranks_per_node,
                                  budget=budget, solver=solver, node_limit=node_limit)
        if found is None:
            continue
        step, groups, status = found
        statuses.append(status)
        if best is None or step < best[0]:
            best = (step, groups)
    if best is None or best[0] >= start.predicted_step_time_ms:
        return None
    plan = Plan(cluster.num_ranks, s.astype(np.int64).tolist(), to_waves(best[1]), "milp-longdoc",
                lower_bound_ms=lower_bound, notes=[f"long-document column MILP ({solver}): " + "; ".join(statuses)])
    plan.predicted_step_time_ms = simulate(plan, cluster, cost_model).step_time_ms
    return plan


def _columns_schedule(s: np.ndarray, cluster: Cluster, cost_model: CostModel, lower_bound: float, start: Plan,
                      column_size: int, *, budget: Budget, solver: str,
                      node_limit: int) -> tuple[float, list[_Placed], str] | None:
    """(step ms, groups, status) of the best schedule over the targets with `start`'s jobs on groups of at
    least `column_size` ranks in columns; None when fewer than two such jobs, no target is feasible or
    the solver is missing."""
    node_ids, in_node, local_ids, tail_work = _split(start, cluster, cost_model, column_size)
    if len(node_ids) < 2:
        return None
    counts = node_counts(cluster.num_nodes)
    times, shapes = node_time_table(s[node_ids], counts, cluster, cost_model, ("ring", "ulysses", "hybrid"))
    buckets = _buckets(s[node_ids])
    local_arr = np.asarray(local_ids, dtype=np.int64)
    local_ms = cost_model.time_ms(s[local_arr], LOCAL, cluster)
    best, built, statuses = None, 0, []
    for factor in TARGET_FACTORS:
        if built >= BUILT_TARGETS or budget.expired(f"long-document MILP at {factor}x bound"):
            break
        if best is not None and best[0] <= lower_bound * factor:  # a looser target rarely beats a plan under it
            break
        try:
            found = solve_columns(times, counts, buckets, cluster, tail_work, lower_bound * factor, solver=solver,
                                  time_limit_s=budget.solver_limit_s(), node_limit=node_limit)
        except (SolverUnavailable, pulp.PulpSolverError) as err:
            log.warning("longctx.scheduler: long-document MILP skipped: %s", err)
            return None
        if found is None:
            continue
        columns, status = found
        grid, placed = build_columns(node_ids, columns, times, counts, shapes, cluster)
        step, groups = list_schedule(in_node, local_arr, local_ms, cluster, grid=grid.copy(), placed=list(placed))
        for tail_target in (lower_bound, lower_bound * factor):
            fitted = best_fit_schedule(in_node, local_arr, local_ms, cluster, grid, placed, tail_target)
            if fitted[0] < step:
                step, groups = fitted
        built += 1
        statuses.append(f"{factor:g}xLB {status}: {step:.1f} ms")
        if best is None or step < best[0]:
            best = (step, groups)
    if best is None:
        return None
    return best[0], best[1], f"columns from {column_size} ranks: " + ", ".join(statuses)
