"""Long-document steps: the generator, static/peer plans as candidates, the long-document MILP,
the static search, the work (node) limit and the wall-clock budget."""
import numpy as np
import pulp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from longctx.scheduler import (Cluster, CostModel, Plan, SchedulerInputError, best_static_plan, lower_bound_ms,
                               plan_step, simulate, static_plan)
from longctx.scheduler.milp import limit_status, make_solver
from longctx.scheduler.static import static_cp_sizes
from longctx.scheduler.workloads import LONG_SHAPES, long_document_step

MODEL = CostModel()


@pytest.mark.parametrize("shape", LONG_SHAPES)
@pytest.mark.parametrize("ranks", [8, 64, 512])
def test_long_document_steps_fill_the_budget_with_long_documents(shape, ranks):
    lengths = long_document_step(shape, ranks, seed=3, tokens_per_rank=65536)
    assert sum(lengths) == ranks * 65536 and min(lengths) >= 1
    assert max(lengths) >= min(150_000, ranks * 65536)
    assert long_document_step(shape, ranks, seed=3, tokens_per_rank=65536) == lengths
    if ranks >= 64:
        long = [x for x in lengths if x >= 150_000]
        assert sum(long) >= (0.2 if shape == "one-1m" else 0.4) * sum(lengths) or shape == "one-1m" and len(long) == 1


def test_long_document_step_bad_input_is_named():
    with pytest.raises(SchedulerInputError, match="shape='huge'"):
        long_document_step("huge", 64)
    with pytest.raises(SchedulerInputError, match="num_ranks=0"):
        long_document_step("several", 0)


@settings(max_examples=20, deadline=None)
@given(lengths=st.lists(st.integers(1, 400_000), min_size=1, max_size=30), nodes=st.sampled_from([1, 2, 3]),
       order=st.sampled_from(["arrival", "balanced"]))
def test_pruned_static_search_equals_the_exhaustive_one(lengths, nodes, order):
    cluster = Cluster(8 * nodes)
    if max(lengths) > MODEL.max_tokens_per_rank(cluster) * cluster.num_ranks:
        return
    exhaustive = min((static_plan(lengths, cluster, cp=cp, order=order)
                      for cp in static_cp_sizes(cluster, max(lengths), MODEL)),
                     key=lambda p: (p.predicted_step_time_ms, len(p.waves[0].groups[0].ranks)))
    found = best_static_plan(lengths, cluster, order=order)
    assert found.method == exhaustive.method and found.waves == exhaustive.waves


def _megatron(lengths, cluster, bound):
    from longctx.peers.megatron_balanced_cp import megatron_balanced_cp_plan  # imports torch: only here

    return megatron_balanced_cp_plan(lengths, cluster, MODEL, bound)


@pytest.mark.parametrize("shape", LONG_SHAPES)
def test_plan_is_never_slower_than_static_or_megatron_on_long_document_steps(shape):
    cluster = Cluster(64)
    lengths = long_document_step(shape, 64, seed=0)
    bound = lower_bound_ms(lengths, cluster, MODEL)
    megatron = _megatron(lengths, cluster, bound)
    static = best_static_plan(lengths, cluster, order="balanced", lower_bound=bound)
    plan = plan_step(lengths, cluster, time_limit_s=None, peer_plans=[megatron])
    plan.validate(MODEL.max_tokens_per_rank(cluster), cluster.ranks_per_node)
    assert plan.predicted_step_time_ms <= min(static.predicted_step_time_ms, megatron.predicted_step_time_ms)
    assert plan.predicted_step_time_ms <= 1.03 * bound, (plan.predicted_step_time_ms / bound, plan.notes)
    # megatron's plan, converted, is a valid plan that the simulator times and the bound holds for
    megatron.validate(MODEL.max_tokens_per_rank(cluster), cluster.ranks_per_node)
    assert simulate(megatron, cluster, MODEL).step_time_ms >= bound


def test_an_expired_budget_still_returns_the_best_of_static_and_the_peers():
    cluster = Cluster(64)
    lengths = long_document_step("bimodal", 64, seed=0)
    peer = plan_step(lengths, cluster, time_limit_s=None)
    peer.method = "outside-tool"
    plan = plan_step(lengths, cluster, time_limit_s=0.0, peer_plans=[peer])
    assert plan.method == "outside-tool" and plan.waves == peer.waves
    assert any("skipped" in note and "longctx search" in note for note in plan.notes), plan.notes
    static = best_static_plan(lengths, cluster, order="balanced")
    alone = plan_step(lengths, cluster, time_limit_s=0.0)  # static and the quick plan: the fastest of the two
    assert alone.method in (static.method, "greedy-quick"), alone.notes
    assert alone.predicted_step_time_ms <= static.predicted_step_time_ms


def test_a_peer_plan_for_another_step_is_ignored(caplog):
    cluster = Cluster(8)
    other = plan_step([1000, 2000], cluster, time_limit_s=None)
    with caplog.at_level("WARNING"):
        plan = plan_step([1000, 3000], cluster, time_limit_s=None, peer_plans=[other])
    assert plan.lengths == [1000, 3000] and "another step" in caplog.text


def test_long_document_milp_improves_on_the_greedy_and_is_deterministic():
    cluster = Cluster(64)
    lengths = long_document_step("bimodal", 64, seed=0)
    greedy = plan_step(lengths, cluster, method="greedy", time_limit_s=None)
    full = plan_step(lengths, cluster, time_limit_s=None)
    assert full.method == "milp-longdoc", full.notes
    assert full.predicted_step_time_ms < 0.999 * greedy.predicted_step_time_ms
    full.validate(MODEL.max_tokens_per_rank(cluster), cluster.ranks_per_node)
    assert simulate(full, cluster, MODEL).step_time_ms == pytest.approx(full.predicted_step_time_ms, rel=1e-9)
    again = plan_step(lengths, cluster, time_limit_s=None)
    assert again.waves == full.waves


def test_node_limit_stops_highs_with_its_incumbent():
    rng = np.random.default_rng(0)
    prob = pulp.LpProblem("knapsacks", pulp.LpMaximize)
    x = [prob.add_variable(f"x{i}", 0, 1, cat="Integer") for i in range(60)]
    prob += pulp.lpSum(float(v) * xi for v, xi in zip(rng.integers(10, 1000, 60), x))
    for _ in range(8):  # eight knapsack rows: far more than two branch-and-bound nodes to prove optimality
        prob += pulp.lpSum(float(w) * xi for w, xi in zip(rng.integers(10, 1000, 60), x)) <= 6000
    prob.solve(make_solver("highs", None, node_limit=2))
    assert prob.status == pulp.LpStatusOptimal and all(xi.value() is not None for xi in x)
    assert limit_status(prob, "highs", "optimal") == "node limit reached, best incumbent used"


@pytest.mark.parametrize("kwargs,message", [(dict(milp_node_limit=0), "milp_node_limit=0"),
                                            (dict(time_limit_s="1"), "time_limit_s='1'")])
def test_bad_limits_are_named(kwargs, message):
    with pytest.raises(SchedulerInputError, match=message):
        plan_step([100], Cluster(8), **kwargs)


def test_plan_from_peer_round_trips_through_json():
    cluster = Cluster(64)
    lengths = long_document_step("several", 64, seed=1)
    plan = plan_step(lengths, cluster, time_limit_s=None)
    assert Plan.from_json(plan.to_json()) == plan
