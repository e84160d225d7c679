"""Cluster validation and files; Plan validation and JSON."""
import json

import pytest

from longctx.scheduler import Cluster, Plan, PlanGroup, PlanInvalidError, PlanWave, SchedulerInputError


def test_ranks_not_a_multiple_of_ranks_per_node_names_both_numbers():
    with pytest.raises(SchedulerInputError, match=r"num_ranks=12 .*ranks_per_node=8"):
        Cluster(12, 8)


def test_zero_memory_is_rejected():
    with pytest.raises(SchedulerInputError, match="memory_per_rank_gb=0"):
        Cluster(8, memory_per_rank_gb=0)


def test_cluster_from_yaml_and_json(tmp_path):
    (tmp_path / "c.yaml").write_text("num_ranks: 16\nranks_per_node: 4\nalltoall_inter_gbps: {2: 9.0}\n")
    cluster = Cluster.from_file(tmp_path / "c.yaml")
    assert (cluster.num_nodes, cluster.alltoall_gbps(8)) == (4, 9.0)
    (tmp_path / "c.json").write_text(json.dumps(cluster.to_dict()))
    assert Cluster.from_file(tmp_path / "c.json") == cluster
    (tmp_path / "bad.json").write_text(json.dumps({"num_ranks": 8, "gpus": 3}))
    with pytest.raises(SchedulerInputError, match="gpus"):
        Cluster.from_file(tmp_path / "bad.json")


def _plan(groups_per_wave, lengths=(10, 20, 30)):
    waves = [PlanWave([PlanGroup(r, k, u, s) for r, k, u, s in groups]) for groups in groups_per_wave]
    return Plan(world_size=4, lengths=list(lengths), waves=waves, method="test", predicted_step_time_ms=1.5,
                lower_bound_ms=1.0, solve_time_s=0.25, notes=["n"])


def test_valid_plan_round_trips_through_json():
    plan = _plan([[([0, 1], "ring", 1, [2]), ([2], "local", 1, [0])], [([0, 1, 2, 3], "hybrid", 2, [1])]])
    plan.validate(max_tokens_per_rank=30, ranks_per_node=4)
    again = Plan.from_json(plan.to_json())
    assert again == plan
    assert set(json.loads(plan.to_json())) >= {"world_size", "lengths", "waves", "method", "predicted_step_time_ms",
                                               "lower_bound_ms", "solve_time_s"}


@pytest.mark.parametrize("groups,message", [
    ([[([0, 1], "ring", 1, [0, 1]), ([1, 2], "ring", 1, [2])]], "already in another group"),
    ([[([0, 1], "ring", 1, [0, 1])], [([2], "local", 1, [1, 2])]], "placed 2 times"),
    ([[([0, 1], "ring", 1, [0, 1])]], r"sequences \[2\] are in no group"),
    ([[([1, 0], "ring", 1, [0, 1, 2])]], "ascending"),
    ([[([0, 1], "ulysses", 1, [0, 1, 2])]], "ulysses_degree"),
    ([[([0], "ring", 1, [0, 1, 2])]], "local"),
    ([[([0, 1, 2, 3], "zigzag", 1, [0, 1, 2])]], "zigzag"),
    ([[([0, 1, 5], "ring", 1, [0, 1, 2])]], "outside"),
])
def test_invalid_plans_are_named(groups, message):
    with pytest.raises(PlanInvalidError, match=message):
        _plan(groups).validate()


def test_memory_and_node_alignment_are_checked():
    plan = _plan([[([0, 1], "ring", 1, [0, 1, 2])]])
    with pytest.raises(PlanInvalidError, match="exceeds the memory"):
        plan.validate(max_tokens_per_rank=14)
    with pytest.raises(PlanInvalidError, match="straddles"):
        _plan([[([1, 2], "ring", 1, [0, 1, 2])]]).validate(ranks_per_node=2)
