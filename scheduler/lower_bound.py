"""A lower bound on a step's time that no plan can beat.

Relaxation: in a plan with step time M every sequence runs on some group
shape whose time is at most M, and the ranks offer N*M rank-ms in total. So
M >= max_i fastest_i, and sum_i (least work of sequence i among shapes taking
<= M) <= N*M. The smallest M meeting both is the bound; it is found by
bisection (the left side only shrinks as M grows) and the bisection's lower
end is returned, so rounding never lifts it above the optimum.

For speed only the `MAX_EXACT` slowest sequences (and every sequence that
does not fit one rank) get the time constraint; the others count with their
least work and no time constraint. Under the formulas the least work is
running locally (a group only adds communication); a measured shape (a cost
profile's fit) can do less rank-ms than one rank, so the least work is the
minimum over local and every measured shape of the cluster — dropping constraints
only lowers the bound, so it stays valid, and it is exact whenever those others
are faster alone than the bound, which is the common case.

It considers every legal shape (every size up to a node, every whole number of
nodes, every kind and Ulysses degree), not only the planner's candidate list,
so it also bounds plans made by other tools.
"""
from __future__ import annotations

import numpy as np

from longctx.scheduler.cluster import Cluster
from longctx.scheduler.cost_model import CostModel, GroupShape, shape_key
from longctx.scheduler.errors import SchedulerInputError
from longctx.scheduler.options import OptionTable

#: sequences whose shape options the bound weighs exactly; the rest count their least work only
MAX_EXACT = 512


def all_shapes(cluster: Cluster, cost_model: CostModel):
    sizes = tuple(range(1, cluster.ranks_per_node + 1)) + tuple(
        range(2 * cluster.ranks_per_node, cluster.num_ranks + 1, cluster.ranks_per_node)
    )
    return cost_model.shapes(cluster, sizes=sizes)


def least_work_ms(s: np.ndarray, shapes, cluster: Cluster, cost_model: CostModel) -> np.ndarray:
    """Least rank-ms of sequences of `s` tokens over local and the measured ones of `shapes` (`[len(s)]`).

    Memory is ignored (a relaxation: it only lowers the bound)."""
    least = cost_model.time_ms(s, shapes[0], cluster)
    for shape in shapes[1:]:
        if shape_key(shape) in cost_model.measured_shapes:
            least = np.minimum(least, shape.size * cost_model.time_ms(s, shape, cluster))
    return least


def check_fits(lengths, cluster: Cluster, cost_model: CostModel) -> np.ndarray:
    """Raise SchedulerInputError for bad lengths or a sequence that no group can hold; return the lengths
    ([sequences] int64 tokens)."""
    cap = cost_model.max_tokens_per_rank(cluster)
    if cap < 1:
        raise SchedulerInputError(
            f"Cluster.memory_per_rank_gb={cluster.memory_per_rank_gb}: not one activation token fits a rank"
        )
    values = np.asarray(lengths, dtype=object if len(lengths) == 0 else None)
    if values.ndim != 1 or values.dtype.kind not in "iu":
        for i, length in enumerate(lengths):
            if isinstance(length, bool) or not isinstance(length, (int, np.integer)):
                raise SchedulerInputError(f"lengths[{i}]={length!r}: every length must be a positive integer (tokens)")
        values = np.asarray(lengths, dtype=np.int64)
    for i in np.flatnonzero(values <= 0)[:1]:
        raise SchedulerInputError(f"lengths[{i}]={values[i]}: every length must be a positive integer (tokens)")
    for i in np.flatnonzero(values > cap * cluster.num_ranks)[:1]:
        raise SchedulerInputError(
            f"lengths[{i}]={values[i]} tokens cannot fit even on the whole cluster: {cluster.num_ranks} ranks x "
            f"{cap} tokens per rank = {cap * cluster.num_ranks}; add ranks, memory or raise offload_fraction"
        )
    return values.astype(np.int64, copy=False)


def work_bound_ms(lengths, cluster: Cluster, cost_model: CostModel) -> float:
    """The work term alone (ms): least rank-ms of the sequences that fit one rank, spread over all ranks.

    A valid lower bound on every plan (weaker than `lower_bound_ms`, which adds the time terms), and
    cheap: it evaluates local and the measured shapes only (lengths already checked).
    """
    shapes = all_shapes(cluster, cost_model) if cost_model.measured_shapes else [GroupShape.make(1, "local")]
    return _work_terms(np.asarray(lengths, dtype=np.float64), cluster, cost_model, shapes)[0]


def _work_terms(s: np.ndarray, cluster: Cluster, cost_model: CostModel, shapes) -> tuple[float, np.ndarray, np.ndarray]:
    """(work bound ms, local time [sequences] ms, least work [sequences] rank-ms) of sequences of `s` tokens."""
    local_ms = cost_model.time_ms(s, shapes[0], cluster)
    least_ms = least_work_ms(s, shapes, cluster, cost_model) if cost_model.measured_shapes else local_ms
    fits_local = s <= cost_model.max_tokens_per_rank(cluster)
    return max(float(least_ms[fits_local].sum()) / cluster.num_ranks, 0.0), local_ms, least_ms


def lower_bound_ms(lengths, cluster: Cluster, cost_model: CostModel, checked: bool = False, shapes=None,
                   max_exact: int = MAX_EXACT) -> float:
    """Lower bound (ms) on the step time of any plan for `lengths` on `cluster` (`checked`: input already checked).

    `shapes`: the group shapes plans may use, local first; default every legal shape (`all_shapes`),
    which bounds every plan. A narrower list (e.g. the planner's candidate shapes, `CostModel.shapes`)
    bounds only plans made of those shapes: the planner's search target on large clusters, where
    `all_shapes` runs to tens of thousands of shapes. `max_exact`: how many of the slowest sequences get
    the time constraint (fewer: faster and looser, still valid; at least 1).
    """
    if not checked:
        check_fits(lengths, cluster, cost_model)
    s = np.asarray(lengths, dtype=np.float64)
    if len(s) == 0:
        return 0.0
    n = cluster.num_ranks
    cap = cost_model.max_tokens_per_rank(cluster)
    shapes = shapes or all_shapes(cluster, cost_model)
    crude, local_ms, least_ms = _work_terms(s, cluster, cost_model, shapes)
    fits_local = s <= cap
    # Sequences that may leave a rank: those not fitting one rank or slower than a first bound.
    long_mask = ~fits_local | (local_ms > crude)
    if long_mask.sum() > max_exact:  # keep the max_exact slowest (and all that need a group) exact
        cut = np.partition(local_ms[long_mask], long_mask.sum() - max_exact)[long_mask.sum() - max_exact]
        long_mask = ~fits_local | (local_ms >= cut)
    short_work = least_ms[~long_mask].sum()
    if not long_mask.any():
        return short_work / n  # every local time is at most crude = short_work / n: no time term can lift it
    table = OptionTable.build(s[long_mask], shapes, cluster, cost_model)
    low = max(float(table.fastest_ms().max()), crude)  # both are valid lower bounds
    times, work = table.time_ms, table.work

    def feasible(m: float) -> bool:
        least = np.where(times <= m, work, np.inf).min(axis=0)
        return bool(np.isfinite(least).all()) and short_work + least.sum() <= n * m

    if feasible(low):
        return low
    high = max(low, (short_work + work.min(axis=0).sum()) / n) * 2 + 1.0
    while not feasible(high):
        high *= 2
    for _ in range(60):
        mid = 0.5 * (low + high)
        if feasible(mid):
            high = mid
        else:
            low = mid
        if high - low <= 1e-6 * high:
            break
    return low
