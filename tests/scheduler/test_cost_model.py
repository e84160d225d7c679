"""Cost model: monotone in length, sensible in group size, memory and profile files."""
import json

import numpy as np
import pytest

from longctx.scheduler import Cluster, CostModel, GroupShape, SchedulerInputError

CLUSTER = Cluster(64)
MODEL = CostModel()


@pytest.mark.parametrize("shape", MODEL.shapes(CLUSTER), ids=lambda s: f"{s.kind}{s.size}u{s.ulysses_degree}")
def test_time_grows_with_length_on_every_shape(shape):
    lengths = np.array([1, 10, 100, 1_000, 8_000, 64_000, 500_000])
    times = MODEL.time_ms(lengths, shape, CLUSTER)
    assert np.all(np.diff(times) > 0), f"{shape}: times {times} not increasing in length"


def test_work_of_a_group_is_never_below_running_locally():
    lengths = np.array([500, 5_000, 50_000, 120_000])
    local = MODEL.time_ms(lengths, GroupShape.make(1, "local"), CLUSTER)
    for shape in MODEL.shapes(CLUSTER)[1:]:
        work = shape.size * MODEL.time_ms(lengths, shape, CLUSTER)
        assert np.all(work >= local * (1 - 1e-12)), f"{shape}: work {work} below local {local}"


def test_long_sequences_get_faster_on_bigger_groups_inside_a_node():
    times = [MODEL.time_ms([120_000], GroupShape.make(d, "ring"), CLUSTER)[0] for d in range(2, 9)]
    assert all(a > b for a, b in zip(times, times[1:])), times


def test_ulysses_across_nodes_pays_for_collapsed_all_to_all():
    local = MODEL.time_ms([64_000], GroupShape.make(1, "local"), CLUSTER)[0]
    overhead = {d: MODEL.time_ms([64_000], GroupShape.make(d, "ulysses"), CLUSTER)[0] - local / d for d in (8, 16)}
    # per-rank traffic halves from 8 to 16 ranks, but the bandwidth falls 96.5 -> 10.3 GB/s
    assert overhead[16] > 4 * overhead[8], overhead


def test_offload_raises_and_activation_size_lowers_tokens_per_rank():
    base = MODEL.max_tokens_per_rank(CLUSTER)
    assert CostModel(offload_fraction=0.5).max_tokens_per_rank(CLUSTER) > 1.9 * base
    assert CostModel(activation_bytes_per_token=2 * MODEL.activation_bytes_per_token).max_tokens_per_rank(
        CLUSTER) < 0.51 * base


def test_profile_round_trip_and_unknown_key(tmp_path):
    path = tmp_path / "profile.json"
    CostModel(linear_ms_per_token=0.1).to_profile(path)
    assert CostModel.from_profile(path) == CostModel(linear_ms_per_token=0.1)
    path.write_text(json.dumps({"linear_ms_per_tokn": 0.1}))
    with pytest.raises(SchedulerInputError, match="linear_ms_per_tokn"):
        CostModel.from_profile(path)


@pytest.mark.parametrize("field,value", [("linear_ms_per_token", 0), ("offload_fraction", 1.0), ("num_layers", -1)])
def test_bad_cost_model_fields_name_the_field(field, value):
    with pytest.raises(SchedulerInputError, match=field):
        CostModel(**{field: value})


def test_unknown_kind_is_rejected_by_name():
    with pytest.raises(SchedulerInputError, match="'spiral'"):
        GroupShape.make(4, "spiral")
    with pytest.raises(SchedulerInputError, match="spiral"):
        MODEL.shapes(CLUSTER, kinds=("ring", "spiral"))
