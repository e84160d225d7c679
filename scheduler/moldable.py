"""Moldable placement of whole-node jobs: each picks its node count when it is placed.

The greedy fixes every sequence's group size first and then list-schedules
the rigid jobs, largest first. When nearly all the step's work sits in a few
hundred whole-node jobs (the long-context mix on thousands of ranks), the
nodes then finish up to one job's length apart and the little local work
cannot even them out (~10% idle). Here the size is chosen at placement time,
against a target step time M:

- jobs go longest sequence first on the nodes sorted by the time they free
  up (ties to the lower node);
- for every node count k (all counts up to `DENSE_NODES`, then steps of
  `NODE_STEP` ratio) the job would start when its k-th node frees up and end
  `time_k` later; among the counts ending by M it takes the one that uses the
  least node time including the idle wait of its nodes
  (``k * end - sum of the k free times``); when none ends by M, the one ending
  first.

In the linear-speedup range of the cost model (ring block compute hiding the
K/V transfer) a sequence's work hardly changes with its group size, so jobs
stretch or shrink to fill the nodes up to M. The candidate's in-node jobs
are placed as the greedy does, either before the whole-node jobs (the local
work then fills the ranks beside them) or after; its local sequences go last
by the greedy's LPT. `moldable_schedule` tries targets of TARGET_FACTORS times
the lower bound and both orders, ranks them by the greedy's estimate, schedules
the best EXACT_CANDIDATES completely and returns the fastest; the planner keeps
it only when it beats the greedy's and the MILP's plans. Deterministic: no
randomness, ties broken by index.
"""
from __future__ import annotations

import numpy as np

from longctx.scheduler.cluster import Cluster
from longctx.scheduler.cost_model import CostModel, GroupShape
from longctx.scheduler.greedy import (EXACT_CANDIDATES, LOCAL, Candidate, Job, _Placed, list_schedule,
                                      place_multi_rank, placement_estimate_ms)
from longctx.scheduler.options import OptionTable

#: node counts tried one by one up to this many nodes, then geometrically
DENSE_NODES = 32
#: ratio between successive node counts beyond DENSE_NODES
NODE_STEP = 1.05
#: target step times tried, as multiples of the lower bound
TARGET_FACTORS = (1.0, 1.01, 1.02, 1.03, 1.05)


def node_counts(num_nodes: int) -> np.ndarray:
    """Node counts a moldable job may take: 1..DENSE_NODES, then steps of NODE_STEP, up to `num_nodes`."""
    counts = set(range(1, min(DENSE_NODES, num_nodes) + 1))
    k = float(DENSE_NODES)
    while k < num_nodes:
        k = max(k * NODE_STEP, k + 1)
        counts.add(min(int(round(k)), num_nodes))
    return np.array(sorted(counts), dtype=np.int64)


def node_time_table(lengths: np.ndarray, counts: np.ndarray, cluster: Cluster, cost_model: CostModel,
                    kinds: tuple[str, ...]) -> tuple[np.ndarray, list[list[GroupShape]]]:
    """Fastest time (ms) [counts, sequences] of each sequence on k whole nodes, and the shape achieving it."""
    rpn = cluster.ranks_per_node
    sizes = tuple(int(k) * rpn for k in counts)
    shapes = [shape for shape in cost_model.shapes(cluster, kinds, sizes) if shape.size > 1]
    table = OptionTable.build(lengths, shapes, cluster, cost_model)
    size_of = np.array([shape.size for shape in shapes])
    times = np.full((len(counts), len(lengths)), np.inf)
    best_shapes: list[list[GroupShape]] = []
    for row, size in enumerate(sizes):
        rows = np.flatnonzero(size_of == size)
        if len(rows) == 0:
            best_shapes.append([])
            continue
        pick = table.time_ms[rows].argmin(axis=0)
        times[row] = table.time_ms[rows[pick], np.arange(len(lengths))]
        best_shapes.append([shapes[rows[p]] for p in pick.tolist()])
    return times, best_shapes


def place_moldable(order: np.ndarray, times: np.ndarray, shapes: list[list[GroupShape]], counts: np.ndarray,
                   target_ms: float, cluster: Cluster, grid: np.ndarray) -> list[_Placed]:
    """Place jobs `order` (columns of `times`) on whole nodes after `grid` (rank free times [nodes, ranks
    per node], ms, updated in place); return the groups."""
    rpn = cluster.ranks_per_node
    node_free = grid.max(axis=1)
    by_free = np.lexsort((np.arange(cluster.num_nodes), node_free))  # nodes in the order they free up
    sorted_free = node_free[by_free]
    touched = np.zeros(cluster.num_nodes, dtype=bool)
    placed: list[_Placed] = []
    offsets = np.arange(rpn)
    for j in order.tolist():
        starts = sorted_free[counts - 1]
        ends = starts + times[:, j]
        cost = counts * ends - np.cumsum(sorted_free)[counts - 1]
        meets = ends <= target_ms
        row = int(np.argmin(np.where(meets, cost, np.inf))) if meets.any() else int(np.argmin(ends))
        k, end = int(counts[row]), float(ends[row])
        nodes = np.sort(by_free[:k])
        touched[nodes] = True
        at = int(np.searchsorted(sorted_free[k:], end, side="right"))
        by_free = np.concatenate((by_free[k:k + at], nodes, by_free[k + at:]))
        sorted_free = np.concatenate((sorted_free[k:k + at], np.full(k, end), sorted_free[k + at:]))
        placed.append(_Placed(float(starts[row]), (nodes[:, None] * rpn + offsets).ravel().tolist(),
                              shapes[row][j], [j]))
    node_free[by_free] = sorted_free
    grid[touched] = node_free[touched, None]
    return placed


def _place(in_node: list[Job], order: np.ndarray, ids: np.ndarray, times: np.ndarray,
           shapes: list[list[GroupShape]], counts: np.ndarray, target_ms: float, cluster: Cluster,
           in_node_first: tuple[np.ndarray, list[_Placed]] | None) -> tuple[np.ndarray, list[_Placed]]:
    """Moldable whole-node jobs after `in_node_first` (grid and groups of the in-node jobs placed
    already, so the local work fills beside them) or, when None, before the in-node jobs; (rank free ms, groups)."""
    if in_node_first is None:
        grid, placed = np.zeros((cluster.num_nodes, cluster.ranks_per_node)), []
    else:
        grid, placed = in_node_first[0].copy(), list(in_node_first[1])
    for item in place_moldable(order, times, shapes, counts, target_ms, cluster, grid):
        item.sequences = [int(ids[item.sequences[0]])]
        placed.append(item)
    if in_node_first is None:
        place_multi_rank(in_node, cluster, grid=grid, placed=placed)
    return grid.reshape(-1), placed


def moldable_schedule(candidates: list[Candidate], lengths, cluster: Cluster, cost_model: CostModel,
                      lower_bound: float, kinds: tuple[str, ...]) -> tuple[float, list[_Placed], str] | None:
    """Best (step ms, groups, label) over `candidates` x TARGET_FACTORS with whole-node jobs made moldable.

    Every pair is ranked by the greedy's estimate (its moldable and in-node placement, local
    work water-filled); the best EXACT_CANDIDATES are scheduled completely. None when no
    candidate has a whole-node job.
    """
    rpn = cluster.ranks_per_node
    s = np.asarray(lengths, dtype=np.float64)
    local_all = cost_model.time_ms(s, LOCAL, cluster)
    counts = node_counts(cluster.num_nodes)
    trials = []  # (estimate, trial index, rank free ms, groups, candidate index, factor)
    for c, candidate in enumerate(candidates):
        node_jobs = [job for job in candidate.jobs if job.shape.size > rpn]
        if not node_jobs:
            continue
        in_node = [job for job in candidate.jobs if job.shape.size <= rpn]
        ids = np.array([job.sequences[0] for job in node_jobs], dtype=np.int64)
        times, shapes = node_time_table(s[ids], counts, cluster, cost_model, kinds)
        order = np.lexsort((ids, -s[ids]))  # longest first, ties to the lower sequence
        local_ms = local_all[candidate.local_mask]
        early_free, early = place_multi_rank(in_node, cluster)
        for factor in TARGET_FACTORS:
            for in_node_first in ((early_free.reshape(cluster.num_nodes, rpn), early), None):
                free, placed = _place(in_node, order, ids, times, shapes, counts, lower_bound * factor, cluster,
                                      in_node_first)
                estimate = placement_estimate_ms(free, float(local_ms.sum()), float(local_ms.max(initial=0.0)))
                trials.append((estimate, len(trials), free, placed, c, factor))
    if not trials:
        return None
    best = None
    for _, _, free, placed, c, factor in sorted(trials, key=lambda t: t[:2])[:EXACT_CANDIDATES]:
        local_ids = np.flatnonzero(candidates[c].local_mask)
        step, groups = list_schedule([], local_ids, local_all[local_ids], cluster,
                                     grid=free.reshape(cluster.num_nodes, rpn), placed=placed)
        if best is None or step < best[0]:
            best = (step, groups, f"{candidates[c].label}-moldable@{factor:g}xLB")
    return best
