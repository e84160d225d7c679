"""Greedy planner: choose a shape per sequence, then list-schedule the groups.

1. Shape choice for a target time M: every sequence takes its least-work
   shape among those finishing within M (`OptionTable.choose`), or its fastest
   shape when none does; short sequences therefore run alone on one rank
   ("local", no communication) and long ones on the smallest group fast enough.
2. List scheduling (`list_schedule`): multi-rank jobs, largest group first,
   each start on the ranks that free up earliest. A group of up to a node's
   ranks sits inside one node; a larger group takes whole nodes. Then the local
   jobs go longest-first to the rank that frees up first (LPT), which evens out
   the finish times. A rank's local sequences form one local group.
3. Waves: groups in start order; a group's wave is one after the latest wave
   its ranks already joined, so each rank meets its groups in wave order.

The planner tries several targets M (multiples of the lower bound, "no
target", and when one sequence dominates the step, fractions of the time left
beside it), places the multi-rank jobs of each, ranks them by an estimate
(water-filling the local work), schedules the best two exactly, and keeps the
fastest. Ties break by target order, rank
index and sequence index, so the result is deterministic.
"""
from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np

from longctx.scheduler.cluster import Cluster
from longctx.scheduler.cost_model import CostModel, GroupShape
from longctx.scheduler.errors import SchedulerInputError
from longctx.scheduler.options import OptionTable
from longctx.scheduler.plan import Plan, PlanGroup, PlanWave

#: targets tried, as multiples of the lower bound (inf = least work, no target; below 1 pushes
#: long sequences onto bigger groups, which helps when big groups queue behind each other)
HIGH_FACTORS = (0.5, 0.7, 0.85, 1.0, 1.02, 1.05, 1.1, 1.2, 1.35, 1.5, 2.0, 3.0, np.inf)
#: when one sequence alone needs more than DOMINANT of the bound, the rest must fit in the
#: residual time next to it: targets are then also tried at these multiples of the residual
DOMINANT = 0.25
LOW_FACTORS = (0.05, 0.1, 0.2, 0.35, 0.5, 0.7, 0.85, 1.0)
#: targets scheduled exactly after ranking all by the placement estimate
EXACT_CANDIDATES = 2

LOCAL = GroupShape.make(1, "local")


@dataclass(frozen=True)
class Job:
    """Sequences `sequences` to run on a group of `shape`, taking `duration_ms` in total."""

    shape: GroupShape
    sequences: tuple[int, ...]
    duration_ms: float


@dataclass
class _Placed:
    start_ms: float
    ranks: list[int]
    shape: GroupShape
    sequences: list[int]


def place_multi_rank(jobs: list[Job], cluster: Cluster) -> tuple[np.ndarray, list[_Placed]]:
    """Place multi-rank jobs (given order) on the earliest-free ranks; return finish times and groups."""
    rpn = cluster.ranks_per_node
    free = np.zeros(cluster.num_ranks)
    by_node = free.reshape(cluster.num_nodes, rpn)  # a view: rows follow `free`
    sorted_rows = np.zeros_like(by_node)  # each node's free times, ascending
    placed: list[_Placed] = []
    for job in jobs:
        d = job.shape.size
        if d > rpn:
            nodes = np.sort(np.argsort(sorted_rows[:, -1], kind="stable")[: d // rpn])
            ranks = (nodes[:, None] * rpn + np.arange(rpn)[None, :]).ravel()
        else:
            node = int(np.argmin(sorted_rows[:, d - 1]))
            nodes = np.array([node])
            row = by_node[node].tolist()
            ready_by = sorted_rows[node, d - 1]
            # best fit: the ready ranks that freed up last, so early-free ranks stay for others
            chosen = sorted((r for r in range(rpn) if row[r] <= ready_by), key=lambda r: (-row[r], r))[:d]
            ranks = np.array(sorted(chosen)) + node * rpn
        start = float(free[ranks].max())
        free[ranks] = start + job.duration_ms
        sorted_rows[nodes] = np.sort(by_node[nodes], axis=1)
        placed.append(_Placed(start, ranks.tolist(), job.shape, list(job.sequences)))
    return free, placed


def water_level_ms(free: np.ndarray, local_work_ms: float) -> float:
    """Finish time if `local_work_ms` were poured over ranks freeing at `free` (a fluid estimate)."""
    levels = np.sort(free)
    filled = np.cumsum(levels)
    counts = np.arange(1, len(levels) + 1)
    need = levels * counts - filled  # work to lift the first k ranks to levels[k-1]
    k = int(np.searchsorted(need, local_work_ms, side="right"))
    return float((local_work_ms + filled[k - 1]) / k)


def list_schedule(multi_jobs: list[Job], local_ids: np.ndarray, local_ms: np.ndarray,
                  cluster: Cluster) -> tuple[float, list[_Placed]]:
    """Place multi-rank jobs, then local sequences by LPT; return (step time ms, groups)."""
    free, placed = place_multi_rank(multi_jobs, cluster)
    order = np.lexsort((local_ids, -local_ms))
    heap = [(t, r) for r, t in enumerate(free.tolist())]
    heapq.heapify(heap)
    per_rank: list[list[int]] = [[] for _ in range(cluster.num_ranks)]
    starts = free.tolist()
    for seq, duration in zip(local_ids[order].tolist(), local_ms[order].tolist()):
        t, r = heap[0]
        per_rank[r].append(seq)
        heapq.heapreplace(heap, (t + duration, r))
    step = max(max(t for t, _ in heap), 0.0)
    placed.extend(_Placed(starts[r], [r], LOCAL, seqs) for r, seqs in enumerate(per_rank) if seqs)
    return step, placed


def to_waves(placed: list[_Placed]) -> list[PlanWave]:
    """Order groups by start time and give each the first wave after its ranks' previous ones."""
    last_wave: dict[int, int] = {}
    waves: list[list[PlanGroup]] = []
    for item in sorted(placed, key=lambda p: (p.start_ms, p.ranks[0])):
        wave = 1 + max((last_wave.get(r, -1) for r in item.ranks), default=-1)
        if wave == len(waves):
            waves.append([])
        waves[wave].append(PlanGroup(item.ranks, item.shape.kind, item.shape.ulysses_degree, item.sequences))
        for r in item.ranks:
            last_wave[r] = wave
    return [PlanWave(sorted(groups, key=lambda g: g.ranks[0])) for groups in waves]


def targets_ms(lengths, cluster: Cluster, cost_model: CostModel, lower_bound: float,
               shapes: list[GroupShape]) -> list[float]:
    """Target step times (ms) the greedy tries, smallest first."""
    targets = [lower_bound * f for f in HIGH_FACTORS]
    if len(lengths) == 0:
        return targets
    longest_fastest = float(OptionTable.build([max(lengths)], shapes, cluster, cost_model).fastest_ms()[0])
    if longest_fastest > DOMINANT * lower_bound:
        residual = max(lower_bound - longest_fastest, 0.01 * lower_bound)
        targets = sorted(set([residual * f for f in LOW_FACTORS] + targets))
    return targets


def greedy_plan(lengths, cluster: Cluster, cost_model: CostModel, lower_bound: float, *,
                kinds: tuple[str, ...] = ("ring", "ulysses", "hybrid"), sizes: tuple[int, ...] | None = None,
                method: str = "greedy") -> Plan:
    """Best list schedule over the targets of `targets_ms` (lower_bound in ms)."""
    s = np.asarray(lengths, dtype=np.float64)
    cap = cost_model.max_tokens_per_rank(cluster)
    local_ms = cost_model.time_ms(s, LOCAL, cluster)
    shapes = cost_model.shapes(cluster, kinds, sizes)
    targets = targets_ms(lengths, cluster, cost_model, lower_bound, shapes)
    # sequences that run locally under every target need no option table
    long_ids = np.flatnonzero((s > cap) | (local_ms > min(targets)))
    table = OptionTable.build(s[long_ids], shapes, cluster, cost_model)
    unplaceable = long_ids[~np.isfinite(table.fastest_ms())]
    if len(unplaceable):
        i = int(unplaceable[0])
        raise SchedulerInputError(
            f"lengths[{i}]={int(s[i])} tokens fits no group shape of kinds {list(kinds)} on this cluster "
            f"({cap} tokens per rank); allow larger groups or other kinds"
        )
    total_local = float(local_ms.sum())

    candidates = []
    for rank_in_list, target in enumerate(targets):
        choice = table.choose(target)
        multi = [j for j, k in enumerate(choice) if table.shapes[k].size > 1]
        jobs = sorted(
            (Job(table.shapes[choice[j]], (int(long_ids[j]),), float(table.time_ms[choice[j], j])) for j in multi),
            key=lambda job: (-job.shape.size, -job.duration_ms, job.sequences),
        )
        local_mask = np.ones(len(s), dtype=bool)
        local_mask[long_ids[multi]] = False
        local_work = total_local - float(local_ms[long_ids[multi]].sum())
        local_max = float(local_ms[local_mask].max(initial=0.0))
        free, _ = place_multi_rank(jobs, cluster)
        estimate = max(float(free.max()), water_level_ms(free, local_work), float(free.min()) + local_max)
        candidates.append((estimate, rank_in_list, jobs, local_mask))
    candidates.sort(key=lambda c: (c[0], c[1]))

    best = None
    for _, rank_in_list, jobs, local_mask in candidates[:EXACT_CANDIDATES]:
        local_ids = np.flatnonzero(local_mask)
        step, placed = list_schedule(jobs, local_ids, local_ms[local_ids], cluster)
        if best is None or (step, rank_in_list) < best[:2]:
            best = (step, rank_in_list, placed)
    step, _, placed = best
    return Plan(cluster.num_ranks, [int(x) for x in lengths], to_waves(placed), method,
                predicted_step_time_ms=step, lower_bound_ms=lower_bound)
