"""The load scale of predicted step times: profiled core share over the share measured on the step before."""
import pytest
import torch

from longctx.model import ModelConfig
from longctx.profiling.profile import core_share
from longctx.profiling.compute import ShapeSample
from longctx.runtime.metrics import step_metrics
from longctx.scheduler import GroupShape, Plan, PlanGroup, PlanWave
from longctx.scheduler.cost_model import load_scale


def test_a_busier_machine_scales_the_plan_time_up_by_the_lost_core_share():
    assert load_scale(0.5, 0.25) == pytest.approx(2.0), "half the CPU per busy second: twice the wall time"
    assert load_scale(0.5, 1.0) == pytest.approx(0.5)


@pytest.mark.parametrize("profiled,now", [(0.0, 0.4), (0.5, None), (0.5, 0.0)])
def test_no_scaling_when_either_share_is_unknown(profiled, now):
    assert load_scale(profiled, now) == 1.0


def test_profile_core_share_weighs_each_sample_by_its_time():
    shape = GroupShape.make(1, "local")
    samples = [ShapeSample(shape, 100, 10.0, 0.2), ShapeSample(shape, 1000, 90.0, 0.6)]
    assert core_share(samples) == pytest.approx((10 * 0.2 + 90 * 0.6) / 100)
    assert core_share([ShapeSample(shape, 100, 10.0)]) == 0.0, "unmeasured (CUDA) shares stay 0"


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
