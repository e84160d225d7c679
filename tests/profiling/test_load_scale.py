"""The load scale of predicted step times: a plan's expected core share over the share measured on it."""
import pytest
import torch

from longctx.model import ModelConfig
from longctx.profiling.compute import ShapeSample
from longctx.profiling.profile import core_shares
from longctx.runtime.metrics import step_metrics
from longctx.scheduler import Cluster, CostModel, GroupShape, Plan, PlanGroup, PlanWave
from longctx.scheduler.cost_model import load_scale
from longctx.scheduler.errors import SchedulerInputError
from longctx.scheduler.step_prediction import StepTimePredictor, expected_core_share

LOCAL, RING2 = GroupShape.make(1, "local"), GroupShape.make(2, "ring")
#: a = 0, b = 1 ms/token: a sequence of s tokens takes s ms on either shape
FITS = {"local:1:1": [0.0, 1.0, 0.0], "ring:2:1": [0.0, 1.0, 0.0]}


def _plan() -> Plan:
    """Wave 1: a 300-token ring on ranks 0-1, locals of 100 tokens on ranks 2 and 3; wave 2: one local of 100."""
    return Plan(world_size=4, lengths=[300, 100, 100, 100],
                waves=[PlanWave([PlanGroup([0, 1], "ring", 1, [0]), PlanGroup([2], "local", 1, [1]),
                                 PlanGroup([3], "local", 1, [2])]),
                       PlanWave([PlanGroup([2], "local", 1, [3])])], method="test").validate()


def test_a_busier_machine_scales_the_plan_time_up_by_the_lost_core_share():
    assert load_scale(0.5, 0.25) == pytest.approx(2.0), "half the CPU per busy second: twice the wall time"
    assert load_scale(0.5, 1.0) == pytest.approx(0.5)


@pytest.mark.parametrize("expected,measured", [(0.0, 0.4), (0.5, None), (0.5, 0.0)])
def test_no_scaling_when_either_share_is_unknown(expected, measured):
    assert load_scale(expected, measured) == 1.0


def test_profile_core_shares_weigh_each_sample_by_its_time_per_shape():
    samples = [ShapeSample(LOCAL, 100, 10.0, 0.2), ShapeSample(LOCAL, 1000, 90.0, 0.6),
               ShapeSample(RING2, 100, 50.0, 0.3), ShapeSample(GroupShape.make(2, "ulysses"), 100, 10.0)]
    assert core_shares(samples) == pytest.approx({"local:1:1": (10 * 0.2 + 90 * 0.6) / 100, "ring:2:1": 0.3}), \
        "per shape, time-weighted; an unmeasured (CUDA) share is left out"


def test_expected_core_share_weighs_shapes_by_busy_rank_time():
    cost_model = CostModel(measured_shapes=FITS, core_shares={"local:1:1": 0.5, "ring:2:1": 0.25})
    cluster = Cluster(num_ranks=4, ranks_per_node=4)
    # busy rank-ms: ring 300 ms x 2 ranks = 600 at 0.25; locals 3 x 100 ms = 300 at 0.5
    assert expected_core_share(_plan(), cluster, cost_model) == pytest.approx((600 * 0.25 + 300 * 0.5) / 900)
    only_ring = CostModel(measured_shapes=FITS, core_shares={"ring:2:1": 0.25})
    assert expected_core_share(_plan(), cluster, only_ring) == pytest.approx(0.25), "unprofiled shapes left out"
    assert expected_core_share(_plan(), cluster, CostModel(measured_shapes=FITS)) == 0.0


def test_predictor_scales_the_next_step_by_expected_over_measured_share():
    cost_model = CostModel(measured_shapes=FITS, core_shares={"local:1:1": 0.5, "ring:2:1": 0.25})
    predictor = StepTimePredictor(Cluster(num_ranks=4, ranks_per_node=4), cost_model)
    assert predictor.load_scale == 1.0, "no step observed yet"
    share = (600 * 0.25 + 300 * 0.5) / 900
    assert predictor.observe(_plan(), measured_core_share=share / 2) == pytest.approx(share)
    assert predictor.load_scale == pytest.approx(2.0), "ranks got half the CPU the profile saw: twice the time"


def test_core_shares_are_validated_with_the_key_and_value_named():
    with pytest.raises(SchedulerInputError, match=r"core_shares key 'ring:x:1'"):
        CostModel(core_shares={"ring:x:1": 0.3})
    with pytest.raises(SchedulerInputError, match=r"core_shares\['ring:2:1'\]=0"):
        CostModel(core_shares={"ring:2:1": 0})


def test_step_metrics_scale_the_plan_time_and_measure_the_core_share():
    plan = Plan(world_size=2, lengths=[8, 8], waves=[PlanWave([PlanGroup([0], "local", 1, [0]),
                                                              PlanGroup([1], "local", 1, [1])])],
                method="test", predicted_step_time_ms=100.0).validate()
    # rows: loss share, busy_s, tokens, peak GB, cpu_s
    rows = torch.tensor([[0.5, 2.0, 8, 0.1, 1.0], [0.5, 1.0, 8, 0.1, 0.2]], dtype=torch.float64)
    model = ModelConfig(name="t", vocab_size=16, dim=8, n_layers=1, n_heads=2, n_kv_heads=1, ffn_dim=16)
    metrics = step_metrics(rows, plan, model, 2.5, 1.0, 1e-3, 1.0, step_overhead_ms=30.0, load_scale=1.5)
    assert metrics["predicted_step_ms"] == pytest.approx(100.0 * 1.5 + 30.0)
    assert metrics["predicted_unscaled_step_ms"] == pytest.approx(130.0)
    assert metrics["core_share"] == pytest.approx(1.2 / 3.0), "CPU seconds over busy seconds of all ranks"
    assert (metrics["waves_ms"], metrics["outside_waves_ms"]) == pytest.approx((2000.0, 500.0))


def test_bench_reports_each_part_of_the_prediction_against_its_measurement():
    from longctx.benchmarks.train_bench import prediction_components

    steps = [{"plan_predicted_ms": 100.0, "load_scale": s, "waves_ms": w, "predicted_step_ms": 100.0 * s + 30.0,
              "outside_waves_ms": o} for s, w, o in ((1.0, 90.0, 20.0), (2.0, 210.0, 40.0), (1.5, 160.0, 25.0))]
    assert prediction_components(steps) == pytest.approx({
        "waves_predicted_ms": 150.0, "waves_measured_ms": 160.0, "outside_waves_predicted_ms": 30.0,
        "outside_waves_measured_ms": 25.0, "load_scale": 1.5})
