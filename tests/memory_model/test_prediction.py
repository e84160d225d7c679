"""The memory model predicts what the runtime keeps, within 10%, on the tiny and small models in every mode.

Saved activations: per layer (blocks, embedding, head), resident and offloaded,
against the runtime's saved-tensor accounting (`tests.memory_model.validation`):
every (checkpointing, offload) pair, tiled and untiled MLP/loss in fp32, and
each pair once (tiled or not) under bf16 autocast with fp32 weights and with
bf16 weights. Model states: parameter,
gradient and optimizer-state bytes per rank on 3 gloo ranks (uneven shards)
for every optimizer setting.
"""
from __future__ import annotations

import pytest

from longctx.model.config import ModelConfig
from longctx.runtime.config import MemoryConfig
from longctx.scheduler.memory_model import MemoryModel
from tests.memory_model import measure, validation

pytestmark = pytest.mark.timeout(600)


@pytest.mark.parametrize("model", ["tiny", pytest.param("small", marks=pytest.mark.slow)])
def test_saved_activations_per_layer_within_10_percent(model):
    cases = validation.cases()
    assert len(cases) == 8 * 2 + 8 * 2
    for case in cases:
        row = validation.measure_row(model, *case)
        assert row.worst_error() <= 0.10, (row.mode, row.layers)


OPTIMIZERS = [("none", False), ("zero1", False), ("zero2", False), ("zero2", True), ("none", True)]


@pytest.mark.parametrize("model", ["tiny", "small"])
def test_model_state_bytes_per_rank_within_10_percent(gloo_pool, model):
    for sharding, offload in OPTIMIZERS:
        memory = MemoryConfig(optimizer_sharding=sharding, optimizer_offload=offload)
        ranks = gloo_pool(3).run(measure.state_bytes, model, memory)
        predicted = MemoryModel(ModelConfig.preset(model), memory, "fp32", world_size=3).state_bytes()
        predicted = {**predicted["device"], **predicted["host"]}
        for name, value in predicted.items():
            measured = max(rank[name] for rank in ranks)
            assert abs(value - measured) <= 0.10 * measured, (sharding, offload, name, value, measured)


def test_peak_grows_with_tokens_and_rejects_what_cannot_fit():
    model = MemoryModel(ModelConfig.preset("llama3-8b"), MemoryConfig(optimizer_sharding="zero2"), "bf16",
                        world_size=8)
    small, large = model.breakdown(1024), model.breakdown(1 << 20)
    assert large.peak_bytes > small.peak_bytes
    cap = model.max_tokens_per_rank(80e9)
    assert model.breakdown(cap).peak_bytes <= 80e9 < model.breakdown(cap + 1).peak_bytes
    assert model.max_tokens_per_rank(1e9) == 0
