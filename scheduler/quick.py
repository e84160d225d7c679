"""The planner's first plan: the greedy's most promising candidate, list-scheduled fast.

`quick_plan` makes the greedy's shape choices over one shape space (one per
target step time, `greedy.shape_choices`), picks the one with the least
placement estimate (`greedy.estimate_ms`; a choice is placed only while a cheap
floor on its estimate can still win, so usually one or two of about ten are)
and schedules only that one: its multi-rank jobs as the greedy places them
(`greedy.place_multi_rank`), then its local sequences by LPT in rounds
(`lpt.lpt_rounds`), each rank's local sequences forming one local group in the
wave after the rank's last group. It is the greedy's plan for that candidate up
to the LPT's rounds (within one short sequence per rank), at a fraction of the
cost on huge steps (100,000 ranks, 1.6M sequences: about 0.5 s instead of 3 s),
so `plan_step` can always
afford it, whatever its time limit: a plan under a tight limit is never worse
than this, and never worse than static. Deterministic (ties by candidate order,
rank and sequence index).
"""
from __future__ import annotations

from itertools import chain

import numpy as np

from longctx.scheduler.cluster import Cluster
from longctx.scheduler.cost_model import CostModel
from longctx.scheduler.greedy import (LOCAL, Candidate, ShapeChoices, _Placed, place_multi_rank, placed_estimate_ms,
                                      shape_choices, to_waves)
from longctx.scheduler.lpt import lpt_rounds
from longctx.scheduler.plan import Plan, PlanGroup, PlanWave
from longctx.scheduler.step_lengths import StepLengths, stable_argsort

#: relative slack on a candidate's estimate floor (its sums round differently from the estimate's)
FLOOR_RTOL = 1e-9


def quick_plan(step: StepLengths, cluster: Cluster, cost_model: CostModel, lower_bound: float, *,
               kinds: tuple[str, ...], sizes: tuple[int, ...] | None = None, label: str) -> Plan:
    """The best-estimated greedy candidate over shapes of `kinds` and `sizes` (None: the default sizes),
    scheduled (`lower_bound` ms: the greedy's targets are multiples of it). Plan.method is `label`."""
    distinct_ms = cost_model.time_ms(step.distinct, LOCAL, cluster)
    local_ms = distinct_ms[step.inverse]
    choices = shape_choices(step.lengths, cluster, cost_model, lower_bound, kinds=kinds, sizes=sizes, label=label,
                            local_ms=local_ms)
    best, free, placed = _most_promising(choices, local_ms, cluster)
    waves = [wave.groups for wave in to_waves(placed)]
    order = step.longest_first(distinct_ms, among=np.flatnonzero(best.local_mask))
    owner = lpt_rounds(free, distinct_ms[step.inverse[order]])
    _add_local_groups(waves, order, owner, cluster.num_ranks)
    return Plan(cluster.num_ranks, step.lengths.tolist(), [PlanWave(sorted(groups, key=lambda g: g.ranks[0]))
                                                           for groups in waves], label,
                predicted_step_time_ms=float(free.max(initial=0.0)), lower_bound_ms=lower_bound,
                notes=[f"quick: best-estimated of {len(choices.choices)} candidates: {best.label}"])


def _most_promising(choices: ShapeChoices, local_ms: np.ndarray, cluster: Cluster) -> tuple[Candidate, np.ndarray,
                                                                                             list[_Placed]]:
    """The candidate with the least placement estimate (`greedy.estimate_ms`; ties to the earlier one) and its
    multi-rank placement (`greedy.place_multi_rank`), placing only candidates whose floor on the estimate can
    still win.

    A candidate's estimate is at least its floor: max(its longest job, its rank-ms of jobs and local
    work over all ranks, its longest local sequence), ms (a rank's jobs run one after another, and the
    estimate's finish is at least the mean finish). Candidates are visited by floor; once a floor is above
    the best estimate so far, no later candidate can win. The result is the exhaustive ranking's."""
    floors = _estimate_floors_ms(choices, local_ms, cluster.num_ranks)
    total_local = float(local_ms.sum())
    best = None  # (estimate ms, index, candidate, free, placed)
    for c in sorted(range(len(floors)), key=lambda c: (floors[c], c)):
        if best is not None and floors[c] * (1 - FLOOR_RTOL) > best[0]:
            break
        candidate = choices.candidate(c, len(local_ms))
        free, placed = place_multi_rank(candidate.jobs, cluster)
        estimate = placed_estimate_ms(candidate, free, local_ms, total_local)
        if best is None or (estimate, c) < best[:2]:
            best = (estimate, c, candidate, free, placed)
    return best[2:]


def _estimate_floors_ms(choices: ShapeChoices, local_ms: np.ndarray, ranks: int) -> list[float]:
    """Per choice of `choices`: the floor on its placement estimate (ms; see `_most_promising`)."""
    table, long_ids = choices.table, choices.long_ids
    is_long = np.zeros(len(local_ms), dtype=bool)
    is_long[long_ids] = True
    short_max = float(local_ms[~is_long].max(initial=0.0))
    total_local = float(local_ms.sum())
    columns = np.arange(len(long_ids))
    floors = []
    for choice in choices.choices:
        durations = table.time_ms[choice, columns]
        multi = table.sizes[choice] > 1
        area = float((table.sizes[choice][multi] * durations[multi]).sum())
        local_work = total_local - float(local_ms[long_ids[multi]].sum())
        floors.append(max(float(durations[multi].max(initial=0.0)), (area + local_work) / ranks,
                          float(local_ms[long_ids[~multi]].max(initial=short_max))))
    return floors


def _add_local_groups(waves: list[list[PlanGroup]], sequences: np.ndarray, owner: np.ndarray, ranks: int) -> None:
    """Add each rank's local `sequences` (`owner` [sequences]: their ranks) as one local group, sequences
    ascending, in the wave after the rank's last multi-rank group."""
    last_wave = np.full(ranks, -1, dtype=np.int64)
    for w, groups in enumerate(waves):
        last_wave[np.fromiter(chain.from_iterable(g.ranks for g in groups), dtype=np.int64)] = w
    owner_of = np.full(int(sequences.max(initial=-1)) + 1, -1, dtype=np.int64)
    owner_of[sequences] = owner
    ascending = np.flatnonzero(owner_of >= 0)
    by_rank = stable_argsort(owner_of[ascending], ranks)  # by rank, then sequence
    cuts = np.concatenate([[0], np.cumsum(np.bincount(owner, minlength=ranks))])  # rank r's: cuts[r]:cuts[r + 1]
    busy = np.flatnonzero(cuts[1:] > cuts[:-1])
    ids = ascending[by_rank].tolist()
    wave_of = last_wave[busy] + 1
    for wave in np.unique(wave_of).tolist():
        if wave == len(waves):
            waves.append([])
        here = busy[wave_of == wave]
        waves[wave].extend([PlanGroup([r], LOCAL.kind, LOCAL.ulysses_degree, ids[begin:end]) for r, begin, end
                            in zip(here.tolist(), cuts[here].tolist(), cuts[here + 1].tolist())])
