"""Every group of a planned sequence of steps runs on the world: no communicator is created after init."""
from __future__ import annotations

import pytest

from longctx.attention import RankGroup
from longctx.benchmarks.communicators_bench import per_rank_tuple_groups
from longctx.runtime.process_groups import WORLD, ProcessGroupCache, communicator_key, communicators_created
from longctx.scheduler import Cluster, CostModel, plan_step
from longctx.scheduler.workloads import document_stream, pack_steps


@pytest.fixture(scope="module")
def plans_64_ranks():
    """30 greedy plans of web-workload steps (16K tokens per rank) on 64 ranks of 8 per node."""
    cluster, cost_model = Cluster(64, ranks_per_node=8), CostModel()
    budget = 16384 * 64
    steps = pack_steps(document_stream("web", 0), budget, 30, budget)
    return [plan_step(lengths, cluster, cost_model=cost_model, method="greedy") for lengths in steps]


def test_a_64_rank_planned_sequence_maps_to_the_world_alone(plans_64_ranks):
    tuples = {tuple(g.ranks) for plan in plans_64_ranks for _, g in plan.groups() if len(g.ranks) > 1}
    assert len(tuples) > 30, f"the plans name only {len(tuples)} multi-rank tuples; the test needs variety"
    keys = {communicator_key(t) for t in tuples}
    assert keys == {WORLD}, keys
    created = communicators_created(plans_64_ranks)
    assert created == [0] * len(plans_64_ranks), created
    old = per_rank_tuple_groups(plans_64_ranks)
    assert sum(old[1:]) > 0, f"one new_group per tuple would create {old} per step; the plans do not vary"


def test_single_rank_groups_need_no_communicator():
    assert communicator_key((5,)) is None
    assert ProcessGroupCache().get([5]) is None


def test_rank_group_rejects_repeated_or_missing_ranks():
    with pytest.raises(ValueError, match="distinct"):
        RankGroup(None, (1, 1))
    with pytest.raises(ValueError, match="distinct"):
        RankGroup(None, ())
