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

A `Candidate` is one shape choice (its multi-rank jobs and its local
sequences). The greedy makes one per target M (multiples of the lower bound,
"no target", and when one sequence dominates the step, fractions of the time
left beside it); the MILP adds its own. `schedule_best` places the multi-rank
jobs of every candidate, ranks them by an estimate (water-filling the local
work), schedules the best two completely, and keeps the fastest. The local
LPT is exact for the `EXACT_LPT_PER_RANK * ranks` longest local sequences and
batched after that (each batch of ranks/`LPT_BATCH_DIVISOR` sequences, longest
first, goes to the ranks that finish first, earliest first), which keeps 16K-rank steps fast.
Ties break by candidate order, rank index and sequence index, so the result
is deterministic.
"""
from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np

from longctx.scheduler.cluster import Cluster
from longctx.scheduler.cost_model import CostModel, GroupShape
from longctx.scheduler.errors import SchedulerInputError
from longctx.scheduler.lpt import exact_lpt
from longctx.scheduler.options import OptionTable
from longctx.scheduler.plan import Plan, PlanGroup, PlanWave

#: targets tried, as multiples of the lower bound (inf = least work, no target; below 1 pushes
#: long sequences onto bigger groups, which helps when big groups queue behind each other)
HIGH_FACTORS = (0.15, 0.25, 0.35, 0.5, 0.6, 0.7, 0.85, 1.0, 1.02, 1.05, 1.1, 1.2, 1.35, 1.5, 2.0, 3.0, np.inf)
#: when one sequence alone needs more than DOMINANT of the bound, the rest must fit in the
#: residual time next to it: targets are then also tried at these multiples of the residual
DOMINANT = 0.25
LOW_FACTORS = (0.05, 0.1, 0.2, 0.35, 0.5, 0.7, 0.85, 1.0)
#: most sequences the greedy and the MILP consider for multi-rank groups besides those slower alone than the
#: bound, which are always considered (`long_floor_ms`; bounds time on huge steps without a quality cliff)
MAX_LONG = 2000
#: candidates scheduled completely after ranking all by the placement estimate
EXACT_CANDIDATES = 2
#: local sequences per rank placed by exact LPT before batching takes over
EXACT_LPT_PER_RANK = 2
#: after that, batches of ranks/LPT_BATCH_DIVISOR sequences go to the earliest-free ranks
LPT_BATCH_DIVISOR = 16

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


def place_multi_rank(jobs: list[Job], cluster: Cluster, record: bool = True, grid: np.ndarray | None = None,
                     placed: list[_Placed] | None = None) -> tuple[np.ndarray, list[_Placed]]:
    """Place multi-rank jobs (sorted by size, largest first) on the earliest-free ranks.

    Jobs of one size are placed from a heap of nodes keyed by when a group of that
    size can start there (ties to the lower node). `grid` [nodes, ranks per node]
    (ms, updated in place) and `placed` continue an earlier placement (default:
    all ranks free at 0, nothing placed). Returns finish times per rank and the
    placed groups (none added when `record` is False, for estimates).
    """
    rpn = cluster.ranks_per_node
    grid = np.zeros((cluster.num_nodes, rpn)) if grid is None else grid  # free time of every rank, by node
    placed = [] if placed is None else placed
    start_of_phase = 0
    while start_of_phase < len(jobs):
        d = jobs[start_of_phase].shape.size
        end_of_phase = start_of_phase
        while end_of_phase < len(jobs) and jobs[end_of_phase].shape.size == d:
            end_of_phase += 1
        phase = jobs[start_of_phase:end_of_phase]
        if d > rpn:
            _place_node_groups(phase, grid, placed if record else None)
        else:
            _place_in_node_groups(phase, grid, placed if record else None)
        start_of_phase = end_of_phase
    return grid.reshape(-1), placed


def _place_node_groups(jobs: list[Job], grid: np.ndarray, placed: list[_Placed] | None) -> None:
    """Groups of whole nodes: take the nodes that free up first."""
    rpn = grid.shape[1]
    heap = list(zip(grid.max(axis=1).tolist(), range(len(grid))))
    heapq.heapify(heap)
    for job in jobs:
        chosen = [heapq.heappop(heap) for _ in range(job.shape.size // rpn)]
        start = max(t for t, _ in chosen)
        end = start + job.duration_ms
        nodes = sorted(n for _, n in chosen)
        grid[nodes] = end
        for n in nodes:
            heapq.heappush(heap, (end, n))
        if placed is not None:
            placed.append(_Placed(start, [n * rpn + r for n in nodes for r in range(rpn)], job.shape,
                                  list(job.sequences)))


def _place_in_node_groups(jobs: list[Job], grid: np.ndarray, placed: list[_Placed] | None) -> None:
    """Groups inside one node: the node where d ranks are free first; best-fit ranks within it."""
    rpn = grid.shape[1]
    d = jobs[0].shape.size
    heap = list(zip(np.sort(grid, axis=1)[:, d - 1].tolist(), range(len(grid))))
    heapq.heapify(heap)
    for job in jobs:
        start, n = heapq.heappop(heap)
        row = grid[n].tolist()
        # best fit: the ready ranks that freed up last, so early-free ranks stay for others
        chosen = sorted(sorted((r for r in range(rpn) if row[r] <= start), key=lambda r: (-row[r], r))[:d])
        end = start + job.duration_ms
        for r in chosen:
            row[r] = end
        grid[n] = row
        heapq.heappush(heap, (sorted(row)[d - 1], n))
        if placed is not None:
            placed.append(_Placed(start, [n * rpn + r for r in chosen], job.shape, list(job.sequences)))


def water_level_ms(free: np.ndarray, local_work_ms: float) -> float:
    """Finish time if `local_work_ms` were poured over ranks freeing at `free` (a fluid estimate)."""
    levels = np.sort(free)
    filled = np.cumsum(levels)
    counts = np.arange(1, len(levels) + 1)
    need = levels * counts - filled  # work to lift the first k ranks to levels[k-1]
    local_work_ms = max(local_work_ms, 0.0)  # a difference of sums may round below zero
    k = max(1, int(np.searchsorted(need, local_work_ms, side="right")))
    return float((local_work_ms + filled[k - 1]) / k)


def placement_estimate_ms(free: np.ndarray, local_work_ms: float, longest_local_ms: float) -> float:
    """Estimated step time (ms) once local work is spread over ranks freeing at `free` (ms)."""
    return max(float(free.max()), water_level_ms(free, local_work_ms), float(free.min()) + longest_local_ms)


def assign_local(free: np.ndarray, ids: np.ndarray, durations: np.ndarray) -> np.ndarray:
    """LPT of local sequences onto ranks that free up at `free` (ms; updated in place).

    `ids`/`durations` must be sorted longest first. Returns the owning rank per sequence.
    """
    owner = np.empty(len(ids), dtype=np.int64)
    exact = min(len(ids), EXACT_LPT_PER_RANK * len(free))
    owner[:exact] = exact_lpt(free, durations[:exact])
    step = max(1, len(free) // LPT_BATCH_DIVISOR)
    for begin in range(exact, len(ids), step):
        batch = durations[begin:begin + step]
        ranks = _earliest(free, len(batch))
        owner[begin:begin + len(batch)] = ranks
        free[ranks] += batch
    return owner


def _earliest(free: np.ndarray, count: int) -> np.ndarray:
    """Indices of the `count` smallest entries of `free`, ascending, ties to the lower index."""
    if count < len(free):
        pool = np.argpartition(free, count - 1)[:count]
        cut = free[pool].max()
        pool = np.flatnonzero(free <= cut)  # every tie at the cut, so the choice never depends on partition order
    else:
        pool = np.arange(len(free))
    return pool[np.lexsort((pool, free[pool]))][:count]


def list_schedule(multi_jobs: list[Job], local_ids: np.ndarray, local_ms: np.ndarray, cluster: Cluster,
                  grid: np.ndarray | None = None, placed: list[_Placed] | None = None) -> tuple[float, list[_Placed]]:
    """Place multi-rank jobs, then local sequences by LPT; return (step time ms, groups).

    `grid`/`placed` continue an earlier placement, as in `place_multi_rank`.
    """
    free, placed = place_multi_rank(multi_jobs, cluster, grid=grid, placed=placed)
    starts = free.tolist()
    order = np.lexsort((local_ids, -local_ms))
    ids = local_ids[order]
    owner = assign_local(free, ids, local_ms[order])
    by_owner = np.argsort(owner, kind="stable")
    cuts = np.searchsorted(owner[by_owner], np.arange(cluster.num_ranks + 1))
    sorted_ids = ids[by_owner].tolist()
    for r in range(cluster.num_ranks):
        if cuts[r + 1] > cuts[r]:
            placed.append(_Placed(starts[r], [r], LOCAL, sorted_ids[cuts[r]:cuts[r + 1]]))
    return float(free.max(initial=0.0)), placed


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


def long_floor_ms(local_ms: np.ndarray, lower_bound: float) -> float:
    """Local time (ms) below which sequences stay local: at most MAX_LONG are considered for groups,
    besides every sequence slower alone than `lower_bound` (ms), which a plan near the bound must put on a
    group, however many there are (at most the ranks, as their local work is at most ranks x the bound)."""
    if len(local_ms) <= MAX_LONG:
        return 0.0
    return min(float(np.partition(local_ms, len(local_ms) - MAX_LONG - 1)[len(local_ms) - MAX_LONG - 1]),
               lower_bound)


def targets_ms(lengths, cluster: Cluster, cost_model: CostModel, lower_bound: float,
               shapes: list[GroupShape]) -> list[float]:
    """Target step times (ms) the greedy tries, smallest first."""
    targets = [lower_bound * f for f in HIGH_FACTORS]
    if len(lengths) == 0:
        return targets
    longest_fastest = float(OptionTable.build([np.max(lengths)], shapes, cluster, cost_model).fastest_ms()[0])
    if longest_fastest > DOMINANT * lower_bound:
        residual = max(lower_bound - longest_fastest, 0.01 * lower_bound)
        targets = sorted(set([residual * f for f in LOW_FACTORS] + targets))
    return targets


@dataclass
class Candidate:
    """One shape choice: multi-rank `jobs` (largest first) and the mask of local sequences."""

    label: str
    jobs: list[Job]
    local_mask: np.ndarray  #: [sequences] bool
    estimate_ms: float = 0.0


def make_candidate(label: str, shape_of: dict[int, GroupShape], time_of: dict[int, float],
                   num_sequences: int) -> Candidate:
    """A candidate from a shape per sequence (sequences absent from `shape_of` run locally)."""
    jobs = sorted((Job(shape, (i,), time_of[i]) for i, shape in shape_of.items() if shape.size > 1),
                  key=lambda job: (-job.shape.size, -job.duration_ms, job.sequences))
    local_mask = np.ones(num_sequences, dtype=bool)
    local_mask[[job.sequences[0] for job in jobs]] = False
    return Candidate(label, jobs, local_mask)


@dataclass(frozen=True)
class ShapeChoices:
    """The greedy's shape choices, one per distinct outcome of its targets, before they become candidates.

    `long_ids` [long]: the sequences considered for groups; `table`: their `OptionTable`; `choices`: per
    kept target (`labels`), the shape index (into `table.shapes`) of every long sequence ([long] int)."""

    long_ids: np.ndarray
    table: OptionTable
    labels: list[str]
    choices: list[np.ndarray]

    def candidate(self, c: int, num_sequences: int) -> Candidate:
        """Choice `c` as a Candidate: multi-rank jobs largest first (then longest, then by sequence)."""
        choice = self.choices[c]
        columns = np.arange(len(choice))
        sizes = self.table.sizes[choice]
        multi = np.flatnonzero(sizes > 1)
        ids, shape_ids, sizes = self.long_ids[multi], choice[multi], sizes[multi]
        durations = self.table.time_ms[shape_ids, columns[multi]]
        order = np.lexsort((ids, -durations, -sizes))
        shapes = self.table.shapes
        jobs = [Job(shapes[k], (i,), d) for k, i, d in zip(shape_ids[order].tolist(), ids[order].tolist(),
                                                            durations[order].tolist())]
        local_mask = np.ones(num_sequences, dtype=bool)
        local_mask[ids] = False
        return Candidate(self.labels[c], jobs, local_mask)


def shape_choices(lengths, cluster: Cluster, cost_model: CostModel, lower_bound: float, *,
                  kinds: tuple[str, ...] = ("ring", "ulysses", "hybrid"), sizes: tuple[int, ...] | None = None,
                  label: str = "greedy", local_ms: np.ndarray | None = None) -> ShapeChoices:
    """The shape choice of every target of `targets_ms` (lower_bound in ms), repeats dropped.

    `local_ms` [sequences]: the sequences' local times when already known (ms)."""
    s = np.asarray(lengths, dtype=np.float64)
    cap = cost_model.max_tokens_per_rank(cluster)
    local_ms = cost_model.time_ms(s, LOCAL, cluster) if local_ms is None else local_ms
    shapes = cost_model.shapes(cluster, kinds, sizes)
    targets = targets_ms(lengths, cluster, cost_model, lower_bound, shapes)
    # sequences that run locally under every target need no option table; targets so small that
    # more than MAX_LONG sequences would leave their rank are dropped (they only cost time)
    floor = long_floor_ms(local_ms, lower_bound)
    targets = [t for t in targets if t >= floor] or [max(targets)]
    long_ids = np.flatnonzero((s > cap) | (local_ms > min(targets)))
    table = OptionTable.build(s[long_ids], shapes, cluster, cost_model)
    unplaceable = long_ids[~np.isfinite(table.fastest_ms())]
    if len(unplaceable):
        i = int(unplaceable[0])
        raise SchedulerInputError(
            f"lengths[{i}]={int(s[i])} tokens fits no group shape of kinds {list(kinds)} on this cluster "
            f"({cap} tokens per rank); allow larger groups or other kinds"
        )
    labels, choices, seen = [], [], set()
    for target in targets:
        choice = table.choose(target)
        key = choice.tobytes()
        if key in seen:  # same shapes as an earlier target
            continue
        seen.add(key)
        labels.append(f"{label}@{target:.0f}ms")
        choices.append(choice)
    return ShapeChoices(long_ids, table, labels, choices)


def greedy_candidates(lengths, cluster: Cluster, cost_model: CostModel, lower_bound: float, *,
                      kinds: tuple[str, ...] = ("ring", "ulysses", "hybrid"), sizes: tuple[int, ...] | None = None,
                      label: str = "greedy") -> list[Candidate]:
    """One candidate per target of `targets_ms` (lower_bound in ms) with a shape choice of its own."""
    choices = shape_choices(lengths, cluster, cost_model, lower_bound, kinds=kinds, sizes=sizes, label=label)
    return [choices.candidate(c, len(lengths)) for c in range(len(choices.choices))]


def estimate_ms(candidate: Candidate, local_ms: np.ndarray, total_local_ms: float, cluster: Cluster) -> float:
    """The candidate's placement estimate (ms): its multi-rank jobs placed, the local work poured over the
    ranks (`local_ms` [sequences]: local times; `total_local_ms`: their sum)."""
    return placed_estimate_ms(candidate, place_multi_rank(candidate.jobs, cluster, record=False)[0], local_ms,
                              total_local_ms)


def placed_estimate_ms(candidate: Candidate, free: np.ndarray, local_ms: np.ndarray, total_local_ms: float) -> float:
    """`estimate_ms` of a candidate whose multi-rank jobs are placed already (`free` [ranks]: finish times, ms)."""
    on_groups = [job.sequences[0] for job in candidate.jobs]
    local_work = total_local_ms - float(local_ms[on_groups].sum())
    local_max = float(local_ms[candidate.local_mask].max(initial=0.0))
    return placement_estimate_ms(free, local_work, local_max)


def estimate_candidates(candidates: list[Candidate], lengths, cluster: Cluster, cost_model: CostModel) -> np.ndarray:
    """Set every candidate's estimate (ms) from its multi-rank placement; return local times [sequences]."""
    local_ms = cost_model.time_ms(np.asarray(lengths, dtype=np.float64), LOCAL, cluster)
    total_local = float(local_ms.sum())
    for candidate in candidates:
        candidate.estimate_ms = estimate_ms(candidate, local_ms, total_local, cluster)
    return local_ms


def schedule_best(candidates: list[Candidate], lengths, cluster: Cluster, cost_model: CostModel,
                  lower_bound: float, method: str) -> tuple[Plan, Candidate]:
    """Schedule the most promising candidates and return the fastest plan and its candidate."""
    local_ms = estimate_candidates(candidates, lengths, cluster, cost_model)
    ranked = sorted(range(len(candidates)), key=lambda c: (candidates[c].estimate_ms, c))
    best = None
    for c in ranked[:EXACT_CANDIDATES]:
        local_ids = np.flatnonzero(candidates[c].local_mask)
        step, placed = list_schedule(candidates[c].jobs, local_ids, local_ms[local_ids], cluster)
        if best is None or (step, c) < best[:2]:
            best = (step, c, placed)
    step, c, placed = best
    plan = Plan(cluster.num_ranks, [int(x) for x in lengths], to_waves(placed), method,
                predicted_step_time_ms=step, lower_bound_ms=lower_bound,
                notes=[f"best of {len(candidates)} candidates: {candidates[c].label}"])
    return plan, candidates[c]


def greedy_plan(lengths, cluster: Cluster, cost_model: CostModel, lower_bound: float, *,
                kinds: tuple[str, ...] = ("ring", "ulysses", "hybrid"), sizes: tuple[int, ...] | None = None,
                method: str = "greedy") -> Plan:
    """The greedy's best plan (lower_bound in ms)."""
    candidates = greedy_candidates(lengths, cluster, cost_model, lower_bound, kinds=kinds, sizes=sizes, label=method)
    return schedule_best(candidates, lengths, cluster, cost_model, lower_bound, method)[0]
