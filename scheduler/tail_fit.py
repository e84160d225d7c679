"""Best-fit placement of in-node jobs against a target step time.

The greedy's list scheduling puts every multi-rank job on the ranks that free
up first. After the whole-node jobs of a long-document step (`longdoc.py`) the
nodes free up at scattered times and the in-node jobs are long (a 200K-token
document on one node of 8 ranks takes a quarter of the step): placed on the
earliest node one by one, the last of them start when every node is already
well filled and end up to one job's length past the others. Here, against a
target step time T (ms), each job (longest first, ties: wider first, then
lower sequence index) goes to the node where it *ends latest without passing
T* (best fit decreasing: the early-free nodes stay free for the longer jobs
still to come and the local sequences fill what is left), or, when it fits
nowhere by T, to the node where it ends first. Within the node it takes the
free ranks that freed up last, as the greedy does. Deterministic: ties go to
the lower node and rank.
"""
from __future__ import annotations

import numpy as np

from longctx.scheduler.cluster import Cluster
from longctx.scheduler.greedy import Job, _Placed, list_schedule


def place_best_fit(jobs: list[Job], grid: np.ndarray, target_ms: float, placed: list[_Placed]) -> None:
    """Place in-node `jobs` (each at most a node wide) on `grid` (rank free times [nodes, ranks per node],
    ms, updated in place) by best fit against `target_ms`; append their groups to `placed`."""
    rpn = grid.shape[1]
    order = sorted(jobs, key=lambda job: (-job.duration_ms, -job.shape.size, job.sequences))
    sorted_rows = np.sort(grid, axis=1)
    for job in order:
        d = job.shape.size
        starts = sorted_rows[:, d - 1]
        ends = starts + job.duration_ms
        fits = ends <= target_ms
        node = int(np.argmax(np.where(fits, ends, -np.inf))) if fits.any() else int(np.argmin(ends))
        start = float(starts[node])
        row = grid[node]
        ready = np.flatnonzero(row <= start)
        chosen = np.sort(ready[np.lexsort((ready, -row[ready]))][:d])  # the ready ranks that freed up last
        row[chosen] = start + job.duration_ms
        sorted_rows[node] = np.sort(row)
        placed.append(_Placed(start, (node * rpn + chosen).tolist(), job.shape, list(job.sequences)))


def best_fit_schedule(in_node: list[Job], local_ids: np.ndarray, local_ms: np.ndarray, cluster: Cluster,
                      grid: np.ndarray, placed: list[_Placed], target_ms: float) -> tuple[float, list[_Placed]]:
    """In-node jobs by `place_best_fit`, then local sequences by the greedy's LPT after `grid`/`placed`
    (copied, not changed); (step time ms, groups)."""
    grid, placed = grid.copy(), list(placed)
    place_best_fit(in_node, grid, target_ms, placed)
    return list_schedule([], local_ids, local_ms, cluster, grid=grid, placed=placed)
