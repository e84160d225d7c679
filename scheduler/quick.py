"""The planner's first plan: the greedy's most promising candidate, list-scheduled fast.

`quick_plan` makes the greedy's candidates over one shape space (one per
target step time, `greedy.greedy_candidates`), ranks them by the placement
estimate (`greedy.estimate_candidates`) and schedules only the best one: its
multi-rank jobs as the greedy places them (`greedy.place_multi_rank`), then its
local sequences by LPT in rounds (`lpt.lpt_rounds`), each rank's local
sequences forming one local group in the wave after the rank's last group. It
is the greedy's plan for that candidate up to the LPT's rounds (within one
short sequence per rank), at a fraction of the cost on huge steps (100,000
ranks, 1.6M sequences: about 1 s instead of 3 s), so `plan_step` can always
afford it, whatever its time limit: a plan under a tight limit is never worse
than this, and never worse than static. Deterministic (ties by candidate order,
rank and sequence index).
"""
from __future__ import annotations

from itertools import chain

import numpy as np

from longctx.scheduler.cluster import Cluster
from longctx.scheduler.cost_model import CostModel
from longctx.scheduler.greedy import LOCAL, estimate_candidates, greedy_candidates, place_multi_rank, to_waves
from longctx.scheduler.lpt import lpt_rounds
from longctx.scheduler.plan import Plan, PlanGroup, PlanWave
from longctx.scheduler.step_lengths import StepLengths


def quick_plan(step: StepLengths, cluster: Cluster, cost_model: CostModel, lower_bound: float, *,
               kinds: tuple[str, ...], sizes: tuple[int, ...] | None = None, label: str) -> Plan:
    """The best-estimated greedy candidate over shapes of `kinds` and `sizes` (None: the default sizes),
    scheduled (`lower_bound` ms: the greedy's targets are multiples of it). Plan.method is `label`."""
    candidates = greedy_candidates(step.lengths, cluster, cost_model, lower_bound, kinds=kinds, sizes=sizes,
                                   label=label)
    estimate_candidates(candidates, step.lengths, cluster, cost_model)
    best = min(range(len(candidates)), key=lambda c: (candidates[c].estimate_ms, c))
    free, placed = place_multi_rank(candidates[best].jobs, cluster)
    waves = [wave.groups for wave in to_waves(placed)]
    distinct_ms = cost_model.time_ms(step.distinct, LOCAL, cluster)
    order = step.longest_first(distinct_ms, among=np.flatnonzero(candidates[best].local_mask))
    owner = lpt_rounds(free, distinct_ms[step.inverse[order]])
    _add_local_groups(waves, order, owner, cluster.num_ranks)
    return Plan(cluster.num_ranks, step.lengths.tolist(), [PlanWave(sorted(groups, key=lambda g: g.ranks[0]))
                                                           for groups in waves], label,
                predicted_step_time_ms=float(free.max(initial=0.0)), lower_bound_ms=lower_bound,
                notes=[f"quick: best-estimated of {len(candidates)} candidates: {candidates[best].label}"])


def _add_local_groups(waves: list[list[PlanGroup]], sequences: np.ndarray, owner: np.ndarray, ranks: int) -> None:
    """Add each rank's local `sequences` (`owner` [sequences]: their ranks) as one local group, sequences
    ascending, in the wave after the rank's last multi-rank group."""
    last_wave = np.full(ranks, -1, dtype=np.int64)
    for w, groups in enumerate(waves):
        last_wave[np.fromiter(chain.from_iterable(g.ranks for g in groups), dtype=np.int64)] = w
    by_rank = np.argsort(owner * (int(sequences.max(initial=0)) + 1) + sequences)  # by rank, then sequence
    cuts = np.searchsorted(owner[by_rank], np.arange(ranks + 1))
    busy = np.flatnonzero(cuts[1:] > cuts[:-1])
    ids = sequences[by_rank].tolist()
    wave_of = last_wave[busy] + 1
    for wave in np.unique(wave_of).tolist():
        if wave == len(waves):
            waves.append([])
        here = busy[wave_of == wave]
        waves[wave].extend([PlanGroup([r], LOCAL.kind, LOCAL.ulysses_degree, ids[begin:end]) for r, begin, end
                            in zip(here.tolist(), cuts[here].tolist(), cuts[here + 1].tolist())])
