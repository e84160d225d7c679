"""`longctx profile` pieces on 2 gloo ranks: tiled waves, links, shapes, a whole quick profile used to train."""
import statistics

import pytest

from longctx.profiling.compute import tiled_plan
from longctx.profiling.fit import fit_link
from longctx.scheduler import GroupShape
from longctx.scheduler.cost_model import shape_key
from longctx.scheduler.cost_profile import CostProfile

from tests.profiling import profile_cases
from tests.runtime.conftest import tiny_run


@pytest.mark.parametrize("shape,world", [
    (GroupShape.make(1, "local"), 4), (GroupShape.make(3, "ring"), 4), (GroupShape.make(4, "hybrid", 2), 4),
    (GroupShape.make(2, "ulysses"), 5), (GroupShape.make(5, "ring"), 5),
])
def test_tiled_plan_keeps_every_rank_busy(shape, world):
    plan, measured = tiled_plan(shape, world, 1001)
    groups = plan.waves[0].groups
    assert sorted(r for g in groups for r in g.ranks) == list(range(world)), "a rank idles in the tiled wave"
    tiles = [g for g in groups if g.shape == shape]
    assert len(tiles) == world // shape.size and measured == [r for g in tiles for r in g.ranks]
    fillers = [g for g in groups if g not in tiles]
    assert all(plan.lengths[g.sequences[0]] == -(-1001 // shape.size) for g in fillers)


def test_tiled_plan_rejects_a_group_larger_than_the_world():
    with pytest.raises(ValueError, match="does not fit"):
        tiled_plan(GroupShape.make(4, "ring"), 3, 100)


def test_link_samples_are_agreed_by_every_rank(gloo_pool):
    results = gloo_pool(2).run(profile_cases.links_case)
    assert results[0] == results[1], "ranks disagree on the measured link"
    for samples in results[0].values():
        assert [b for b, _ in samples] == [4096, 4 << 20] and all(seconds > 0 for _, seconds in samples)
    # the fit of such samples is tested exactly in test_fit; here load may make it fail, with a clear error:
    try:
        latency_us, gbps = fit_link(*zip(*results[0]["p2p"]))
    except ValueError as error:
        assert "do not grow" in str(error)
    else:
        assert latency_us >= 0 and gbps > 0


def test_shapes_are_timed_at_every_length(gloo_pool, tiny_dataset, tmp_path):
    run = tiny_run(tiny_dataset, tmp_path / "run", "parallel.nprocs=2", "parallel.max_tokens_per_rank=200")
    samples = gloo_pool(2).run(profile_cases.shapes_case, run.model, (32, 64, 96))[0]
    assert [(shape_key(s.shape), s.tokens) for s in samples] == [
        (key, n) for key in ("local:1:1", "ring:2:1", "ulysses:2:2") for n in (32, 64, 96)]
    assert all(s.time_ms > 0 for s in samples)


def test_shapes_are_timed_with_the_trainers_memory_settings(gloo_pool, tiny_dataset, tmp_path):
    run = tiny_run(tiny_dataset, tmp_path / "run", "parallel.nprocs=2", "parallel.max_tokens_per_rank=200",
                   "memory.checkpointing=full", "memory.offload=checkpoints")
    seen = gloo_pool(2).run(profile_cases.trainer_memory_case, run, (32, 64, 96))
    assert all(rank["offloaded_bytes"] > 0 for rank in seen), \
        f"the profile timed the shapes without the run's layer-checkpoint offload: {seen}"
    assert all(rank["precision"] == "fp32" for rank in seen)


def test_quick_profile_plans_and_predicts_training(gloo_pool, tiny_dataset, tmp_path):
    run = tiny_run(tiny_dataset, tmp_path / "run", "parallel.nprocs=2", "parallel.max_tokens_per_rank=200")
    path = tmp_path / "profile.yaml"
    gloo_pool(2).run(profile_cases.profile_case, run, str(path))
    profile = CostProfile.load(path)
    model = profile.cost_model
    assert set(model.measured_shapes) == {"local:1:1", "ring:2:1", "ulysses:2:2"}
    a, b, c = model.measured_shapes["local:1:1"]
    assert (model.sequence_overhead_ms, model.linear_ms_per_token, model.attention_ms_per_token2) == (
        a, max(b, 1e-12), max(c, 1e-12)), "the formulas' constants are not the local fit"
    assert (model.num_layers, model.num_heads, model.num_kv_heads) == (run.model.n_layers, run.model.n_heads,
                                                                       run.model.n_kv_heads)
    intra = {"intra_node_p2p_gbps", "link_latency_us", "alltoall_intra_gbps"}
    assert set(profile.links) <= intra and all(  # a fit the shared machine's load spoils is named, not invented
        "fit failed" in profile.not_measured[name] for name in intra - set(profile.links))
    assert {"inter_node_p2p_gbps", "alltoall_inter_gbps"} <= set(profile.not_measured)
    assert profile.provenance["command"] == "pytest" and profile.provenance["world_size"] == 2
    fitted = profile.measurements["step_overhead"]
    assert len(fitted["residual_samples_ms"]) == len(fitted["outside_waves_samples_ms"]) == 3
    assert model.step_overhead_ms == max(statistics.median(fitted["outside_waves_samples_ms"][1:]), 0.0), \
        "the step overhead is not the time outside the waves"
    assert all(sample > 0 for sample in fitted["outside_waves_samples_ms"]), "a step takes time outside its waves"
    assert not list(tmp_path.glob(".longctx-profile-*")), "the overhead fit's scratch run was left behind"

    trained = tiny_run(tiny_dataset, tmp_path / "with_profile", "parallel.nprocs=2", "parallel.max_tokens_per_rank=200", "train.steps=2",
                       f"parallel.cost_profile={path}")
    assert set(model.core_shares) == set(model.measured_shapes) and all(
        0 < share <= 2 for share in model.core_shares.values()), f"core shares {model.core_shares} of 2 ranks"
    first, second = gloo_pool(2).run(profile_cases.train_case, trained)[0]
    for metrics in (first, second):
        assert metrics["predicted_unscaled_step_ms"] == pytest.approx(metrics["plan_predicted_ms"] + model.step_overhead_ms)
        assert metrics["step_time_ms"] == pytest.approx(1e3 * metrics["step_time_s"])
        assert 0 < metrics["core_share"] <= 2
        assert min(model.core_shares.values()) <= metrics["expected_core_share"] <= max(model.core_shares.values())
    assert first["predicted_step_ms"] == pytest.approx(first["predicted_unscaled_step_ms"]), \
        "the first step has no load measured before it: no scaling"
    scale = first["expected_core_share"] / first["core_share"]
    assert second["load_scale"] == pytest.approx(scale)
    assert second["predicted_step_ms"] == pytest.approx(second["plan_predicted_ms"] * scale + model.step_overhead_ms)
