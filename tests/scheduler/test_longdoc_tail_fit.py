"""The long-document MILP's slot patterns, the best-fit tail placement (`tail_fit.py`) and the
long-document plans they make: valid, memory-feasible, timed like the independent simulation,
never slower than the plan they start from, within 3% of the bound."""
import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from longctx.scheduler import Cluster, CostModel, Plan, lower_bound_ms, plan_step, simulate
from longctx.scheduler.budget import Budget
from longctx.scheduler.cost_model import GroupShape
from longctx.scheduler.greedy import Job, LOCAL, to_waves
from longctx.scheduler.longdoc import MAX_SLOTS, PATTERNS, SLOT_FRACTIONS, longdoc_plan, slot_patterns
from longctx.scheduler.tail_fit import best_fit_schedule, place_best_fit
from longctx.scheduler.workloads import document_stream, long_document_step, pack_steps

MODEL = CostModel()


def test_slot_patterns_are_every_way_to_fill_one_column():
    assert set(slot_patterns((0.5, 0.25), 4)) == {(0.5, 0.5), (0.5, 0.25, 0.25), (0.25, 0.25, 0.25, 0.25)}
    assert slot_patterns((0.5, 0.25), 2) == ((0.5, 0.5),)
    # reference: brute force over ordered tuples of the fractions
    brute = {tuple(sorted(c, reverse=True)) for n in range(1, MAX_SLOTS + 1)
             for c in itertools.product(SLOT_FRACTIONS, repeat=n) if abs(sum(c) - 1) < 1e-9}
    assert set(PATTERNS) == brute and len(PATTERNS) == len(brute)
    assert (1.0,) in PATTERNS and (0.4, 0.3, 0.3) in PATTERNS


def test_best_fit_takes_the_fullest_node_that_still_meets_the_target():
    grid = np.array([[0.0] * 4, [5.0] * 4, [8.0] * 4])
    shape4, shape2 = GroupShape.make(4, "ring"), GroupShape.make(2, "ring")
    jobs = [Job(shape4, (0,), 5.0), Job(shape4, (1,), 2.0), Job(shape2, (2,), 4.0)]
    placed = []
    place_best_fit(jobs, grid, 10.0, placed)
    where = {p.sequences[0]: (p.start_ms, p.ranks) for p in placed}
    # the 5 ms job fits by 10 ms on nodes 0 and 1: node 1 (ends at 10); the 2 ms one on node 2 (ends at 10);
    # the 2-rank 4 ms job on node 0, its lowest ranks
    assert where == {0: (5.0, [4, 5, 6, 7]), 1: (8.0, [8, 9, 10, 11]), 2: (0.0, [0, 1])}
    assert grid.tolist() == [[4.0, 4.0, 0.0, 0.0], [10.0] * 4, [10.0] * 4]


def test_a_job_that_meets_no_target_takes_the_earliest_end():
    grid = np.array([[3.0, 3.0], [1.0, 2.0]])
    placed = []
    place_best_fit([Job(GroupShape.make(2, "ring"), (0,), 5.0)], grid, 4.0, placed)
    assert placed[0].start_ms == 2.0 and placed[0].ranks == [2, 3] and grid.tolist() == [[3.0, 3.0], [7.0, 7.0]]


@settings(max_examples=25, deadline=None)
@given(lengths=st.lists(st.integers(1, 300_000), min_size=1, max_size=40), nodes=st.sampled_from([1, 2, 3]),
       busy=st.lists(st.floats(0, 5e4), min_size=3, max_size=3), target=st.floats(1e3, 3e5))
def test_best_fit_schedule_is_a_valid_plan_timed_like_the_simulation(lengths, nodes, busy, target):
    """Every sequence once, memory-feasible groups, and the returned step time is the simulated one
    (the simulator shares no placement code with tail_fit), after whole-node work already on the grid."""
    cluster = Cluster(8 * nodes)
    cap = MODEL.max_tokens_per_rank(cluster)
    s = np.asarray(lengths)
    grid = np.repeat(np.asarray(busy[:nodes])[:, None], 8, axis=1)
    in_node, local = [], []
    for i, length in enumerate(lengths):
        size = MODEL.min_group_size(length, cluster)
        if size == 1 and length < 20_000:
            local.append(i)
            continue
        size = 2 ** int(np.ceil(np.log2(max(size, 2))))
        shape = GroupShape.make(size, "ulysses" if i % 2 else "ring")
        in_node.append(Job(shape, (i,), float(MODEL.time_ms([length], shape, cluster)[0])))
    local_ids = np.asarray(local, dtype=np.int64)
    local_ms = MODEL.time_ms(s[local_ids], LOCAL, cluster)
    step, groups = best_fit_schedule(in_node, local_ids, local_ms, cluster, grid, [], target)
    assert grid.tolist() == np.repeat(np.asarray(busy[:nodes])[:, None], 8, axis=1).tolist()  # not changed
    # reference timing: each rank starts at its busy time, a group starts when all its ranks are free
    plan = Plan(cluster.num_ranks, [int(x) for x in lengths], to_waves(groups), "best-fit")
    plan.validate(cap, cluster.ranks_per_node)
    assert sorted(i for _, g in plan.groups() for i in g.sequences) == list(range(len(lengths)))
    finish = np.repeat(np.asarray(busy[:nodes]), 8).copy()
    for _, group in plan.groups():
        duration = float(MODEL.time_ms(s[list(group.sequences)], group.shape, cluster).sum())
        finish[group.ranks] = finish[group.ranks].max() + duration
    assert step == pytest.approx(float(finish.max()), rel=1e-9)
    if not any(busy[:nodes]):
        assert simulate(plan, cluster, MODEL).step_time_ms == pytest.approx(step, rel=1e-9)


def _longmix_step(ranks: int) -> list[int]:
    budget = 65536 * ranks
    return pack_steps(document_stream("longmix", 0), budget, 1, budget)[0]


@pytest.mark.parametrize("workload,ranks", [("longmix", 4096), ("several", 512), ("bimodal", 512), ("bimodal", 64)])
def test_long_document_plans_are_within_three_percent_of_the_bound(workload, ranks):
    cluster = Cluster(ranks)
    lengths = _longmix_step(ranks) if workload == "longmix" else long_document_step(workload, ranks, seed=0)
    plan = plan_step(lengths, cluster, time_limit_s=None)
    plan.validate(MODEL.max_tokens_per_rank(cluster), cluster.ranks_per_node)
    assert simulate(plan, cluster, MODEL).step_time_ms == pytest.approx(plan.predicted_step_time_ms, rel=1e-9)
    assert plan.predicted_step_time_ms <= 1.03 * lower_bound_ms(lengths, cluster, MODEL), plan.notes


def test_long_document_milp_never_returns_a_plan_slower_than_its_start():
    cluster = Cluster(512)
    lengths = _longmix_step(512)
    bound = lower_bound_ms(lengths, cluster, MODEL)
    start = plan_step(lengths, cluster, method="greedy", time_limit_s=None)
    found = longdoc_plan(np.asarray(lengths), cluster, MODEL, bound, start, budget=Budget(None), solver="highs")
    assert found is not None and found.method == "milp-longdoc"
    assert simulate(found, cluster, MODEL).step_time_ms < start.predicted_step_time_ms
    found.validate(MODEL.max_tokens_per_rank(cluster), cluster.ranks_per_node)
    # started from a plan it cannot beat (its own), it returns nothing
    again = longdoc_plan(np.asarray(lengths), cluster, MODEL, bound, found, budget=Budget(None), solver="highs")
    assert again is None or again.predicted_step_time_ms < found.predicted_step_time_ms
