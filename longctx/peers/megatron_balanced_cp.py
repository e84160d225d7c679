"""megatron-core's `BalancedCPScheduler` (the real one, run on CPU) as a longctx Plan.

megatron-core 0.16's hybrid context parallelism (`megatron.core.pipeline_parallel.
hybrid_cp_schedule.BalancedCPScheduler`) gives every sample a CP group of
``2**ceil(log2(len / max_seq_len_per_rank))`` ranks, forms balanced "groups" of
samples over the DP x CP ranks (workload ``len**2 / cp``), and separates its
groups by a barrier. `megatron_balanced_cp_plan` calls its
`get_groups_and_subsamples` unchanged and converts the result: within one
megatron group the ranks holding a sample form that sample's CP group (kind
"ring", megatron's P2P context parallelism; "local" for one rank); every
megatron group becomes the next waves of the Plan. The Plan is then timed by
longctx's simulator like every other method. That timing has no barrier between
megatron's groups (a Plan wave waits only for its own ranks), so it is
optimistic for megatron, never pessimistic.

`max_seq_len_per_rank` is megatron's knob; `megatron_balanced_cp_plan` tries
`MAX_LEN_DIVISORS` fractions of the memory cap (tokens per rank the cost model
allows; the fastest were cap/8 to cap/32 on the benchmark's steps, and each try
costs minutes at 512 ranks) and keeps the fastest plan that passes longctx's
validation (node alignment included), so the peer gets its best setting.

This module imports torch (megatron-core does, at import), so it lives outside
`longctx.scheduler`, which never imports torch; the planner takes its plan
through `plan_step(..., peer_plans=[...])`. Import it lazily: importing it
imports megatron-core and torch (so their import time is not counted as solve time).
"""
from __future__ import annotations

import math
import time

from megatron.core.pipeline_parallel.hybrid_cp_schedule import BalancedCPScheduler

from longctx.scheduler import Cluster, CostModel, Plan, PlanGroup, PlanWave, simulate
from longctx.scheduler.errors import SchedulerInputError
from longctx.scheduler.lower_bound import check_fits
from longctx.scheduler.plan import PlanInvalidError

#: megatron's max_seq_len_per_rank tried, as the memory cap divided by these
MAX_LEN_DIVISORS = (2, 4, 8, 16, 32)


class _SizeOnlyGroup:
    """What BalancedCPScheduler reads from its process group: only ``size()``."""

    def __init__(self, size: int) -> None:
        self._size = size

    def size(self) -> int:
        return self._size


def _waves_of(micro_groups: list[list[list[int]]]) -> list[PlanWave]:
    """Waves from megatron's sample ids per group per rank: one wave per megatron group when its
    CP groups are disjoint (else as many as needed, a group going to the first wave its ranks are free in)."""
    waves: list[PlanWave] = []
    for per_rank in micro_groups:
        ranks_of: dict[int, list[int]] = {}
        for rank, samples in enumerate(per_rank):
            for sample in samples:
                ranks_of.setdefault(int(sample), []).append(rank)
        groups: dict[tuple[int, ...], list[int]] = {}
        for sample, ranks in ranks_of.items():
            groups.setdefault(tuple(sorted(set(ranks))), []).append(sample)
        first = len(waves)
        for ranks, samples in sorted(groups.items()):
            size = len(ranks)
            group = PlanGroup(list(ranks), "local" if size == 1 else "ring", 1, samples)
            w = first
            while w < len(waves) and any(set(ranks) & set(g.ranks) for g in waves[w].groups):
                w += 1
            if w == len(waves):
                waves.append(PlanWave([]))
            waves[w].groups.append(group)
    for wave in waves:
        wave.groups.sort(key=lambda g: g.ranks[0])
    return waves


def megatron_plan_at(lengths, cluster: Cluster, max_seq_len_per_rank: int) -> Plan | None:
    """megatron's plan for one `max_seq_len_per_rank`; None when it needs more ranks than the cluster has."""
    n = cluster.num_ranks
    if 2 ** math.ceil(math.log2(max(max(lengths) / max_seq_len_per_rank, 1))) > n:
        return None  # megatron would loop forever on a sample it can never place
    scheduler = BalancedCPScheduler(max_seq_len_per_rank, _SizeOnlyGroup(n))
    _, sample_id_groups = scheduler.get_groups_and_subsamples(list(enumerate(int(x) for x in lengths)), None)
    return Plan(n, [int(x) for x in lengths], _waves_of(sample_id_groups),
                f"megatron-balanced-cp@{max_seq_len_per_rank}")


def megatron_balanced_cp_plan(lengths, cluster: Cluster, cost_model: CostModel | None = None,
                              lower_bound: float | None = None) -> Plan:
    """The fastest valid megatron `BalancedCPScheduler` plan over MAX_LEN_DIVISORS (timed by `simulate`)."""
    started = time.perf_counter()
    cost_model = cost_model or CostModel()
    check_fits(lengths, cluster, cost_model)
    cap = cost_model.max_tokens_per_rank(cluster)
    best, tried = None, []
    for divisor in MAX_LEN_DIVISORS:
        plan = megatron_plan_at(lengths, cluster, max(1, cap // divisor))
        if plan is None:
            tried.append(f"cap/{divisor}: does not fit")
            continue
        try:
            plan.validate(cap, cluster.ranks_per_node)
        except PlanInvalidError as err:
            tried.append(f"cap/{divisor}: invalid ({err})")
            continue
        plan.predicted_step_time_ms = simulate(plan, cluster, cost_model).step_time_ms
        tried.append(f"cap/{divisor}={plan.predicted_step_time_ms:.0f}ms")
        if best is None or plan.predicted_step_time_ms < best.predicted_step_time_ms:
            best = plan
    if best is None:
        raise SchedulerInputError(f"megatron BalancedCPScheduler made no valid plan: {'; '.join(tried)}")
    best.lower_bound_ms = lower_bound or 0.0
    best.notes.append("max_seq_len_per_rank tried: " + ", ".join(tried))
    best.solve_time_s = time.perf_counter() - started
    return best
