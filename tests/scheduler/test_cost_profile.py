"""Cost profiles: round trips, links applied to the cluster, measured shapes priced, errors named, CLI use."""
import json

import numpy as np
import pytest

from longctx.scheduler import Cluster, CostModel, GroupShape, Plan, SchedulerInputError, simulate
from longctx.scheduler.cli import plan_main
from longctx.scheduler.cost_profile import CostProfile, planning_inputs

MEASURED = {"local:1:1": [3.0, 0.02, 1e-5], "ring:2:1": [5.0, 0.012, 6e-6]}


def _profile() -> CostProfile:
    model = CostModel(linear_ms_per_token=0.02, attention_ms_per_token2=1e-5, sequence_overhead_ms=3.0,
                      step_overhead_ms=40.0, num_layers=2, num_heads=4, num_kv_heads=2, head_dim=16,
                      measured_shapes=MEASURED)
    return CostProfile(cost_model=model, links={"intra_node_p2p_gbps": 1.5, "link_latency_us": 55.0,
                                                "alltoall_intra_gbps": {2: 0.9, 4: 0.7}},
                       not_measured={"inter_node_p2p_gbps": "one node"}, measurements={"shapes": []},
                       provenance={"command": "longctx profile"})


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_round_trip(tmp_path, suffix):
    path = tmp_path / f"profile{suffix}"
    _profile().write(path)
    loaded = CostProfile.load(path)
    assert loaded.cost_model == _profile().cost_model
    assert loaded.cluster(Cluster(4, 4)) == _profile().cluster(Cluster(4, 4))
    assert CostModel.from_profile(path) == _profile().cost_model
    assert not list(tmp_path.glob(".*")), "the temporary file of the atomic write was left behind"


def test_links_replace_only_what_was_measured():
    cluster = _profile().cluster(Cluster(8, 4))
    assert cluster.intra_node_p2p_gbps == 1.5 and cluster.link_latency_us == 55.0
    assert cluster.alltoall_gbps(2) == 0.9 and cluster.alltoall_gbps(4) == 0.7
    default = Cluster(8, 4)
    assert cluster.inter_node_p2p_gbps == default.inter_node_p2p_gbps
    assert cluster.alltoall_inter_gbps == default.alltoall_inter_gbps


def test_measured_shapes_replace_the_formulas_and_others_pay_the_sequence_overhead():
    model = _profile().cost_model
    cluster = _profile().cluster(Cluster(4, 4))
    s = np.array([100.0, 1000.0])
    a, b, c = MEASURED["ring:2:1"]
    assert model.time_ms(s, GroupShape.make(2, "ring"), cluster) == pytest.approx(a + b * s + c * s * s)
    unmeasured = GroupShape.make(4, "ring")
    formula = CostModel(**{**model.__dict__, "measured_shapes": {}, "sequence_overhead_ms": 0.0})
    assert model.time_ms(s, unmeasured, cluster) == pytest.approx(formula.time_ms(s, unmeasured, cluster) + 3.0)


def test_flat_profile_still_reads(tmp_path):
    path = tmp_path / "flat.json"
    CostModel(linear_ms_per_token=0.1).to_profile(path)
    profile = CostProfile.load(path)
    assert profile.cost_model == CostModel(linear_ms_per_token=0.1) and profile.links == {}


@pytest.mark.parametrize("edit,match", [
    (lambda d: d["links"].update(num_ranks=8), "num_ranks"),
    (lambda d: d["links"].update(intra_node_p2p_gbps=-1), "intra_node_p2p_gbps"),
    (lambda d: d["cost_model"].update(measured_shapes={"ring:2": [1, 2, 3]}), "kind:size:ulysses_degree"),
    (lambda d: d["cost_model"].update(measured_shapes={"ring:2:1": [1, -2, 3]}), "ring:2:1"),
    (lambda d: d["cost_model"].update(measured_shapes={"ulysses:2:1": [1, 2, 3]}), "ulysses_degree must be 2"),
    (lambda d: d["cost_model"].update(step_overhead_ms=-5), "step_overhead_ms"),
    (lambda d: d.update(extra={}), "extra"),
    (lambda d: d.update(format="longctx-cost-profile/0"), "format"),
])
def test_bad_profiles_name_the_key(tmp_path, edit, match):
    data = _profile().to_dict()
    data = json.loads(json.dumps(data))
    edit(data)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(SchedulerInputError, match=match):
        CostProfile.load(path)


def test_planning_inputs_default_and_profile(tmp_path):
    cluster = Cluster(4, 4)
    assert planning_inputs(None, cluster) == (cluster, CostModel())
    path = tmp_path / "p.yaml"
    _profile().write(path)
    planned_cluster, model = planning_inputs(path, cluster)
    assert planned_cluster.intra_node_p2p_gbps == 1.5 and model.step_overhead_ms == 40.0


def test_plan_cli_plans_with_the_profile(tmp_path):
    profile_path, lengths, out = tmp_path / "p.yaml", tmp_path / "lengths.txt", tmp_path / "plan.json"
    _profile().write(profile_path)
    lengths.write_text("\n".join(str(n) for n in (2000, 900, 300, 120, 64)) + "\n")
    assert plan_main(["--lengths", str(lengths), "--ranks", "4", "--ranks-per-node", "4", "--cost-profile",
                      str(profile_path), "--method", "greedy", "--out", str(out)]) == 0
    plan = Plan.from_json(out.read_text())
    profile = CostProfile.load(profile_path)
    expected = simulate(plan, profile.cluster(Cluster(4, 4)), profile.cost_model).step_time_ms
    assert plan.predicted_step_time_ms == pytest.approx(expected)
    default = simulate(plan, Cluster(4, 4), CostModel()).step_time_ms
    assert abs(plan.predicted_step_time_ms - default) > 0.5 * default, "the profile was not used"
