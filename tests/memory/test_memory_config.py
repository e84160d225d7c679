"""The memory Hydra group: defaults, validation naming field, value and fix, the migrated offload flag."""
from __future__ import annotations

import re

import pytest

from longctx.runtime.config import ConfigError, MemoryConfig
from longctx.runtime.train_cli import compose_run_config


def test_the_trainer_default_is_the_long_sequence_setting():
    memory = compose_run_config([]).memory
    assert (memory.checkpointing, memory.offload, memory.mlp_tile_tokens, memory.loss_tile_tokens) == \
        ("tiled", "checkpoints", 8192, 8192)
    untiled = compose_run_config(["memory.checkpointing=full", "memory.mlp_tile_tokens=null"]).memory
    assert untiled.mlp_tile_tokens is None


@pytest.mark.parametrize("overrides, message", [
    (["memory.checkpointing=some"], "memory.checkpointing='some' is not supported; choose one of"),
    (["memory.offload=disk"], "memory.offload='disk' is not supported"),
    (["memory.checkpointing=none"], "memory.offload='checkpoints' with memory.checkpointing='none'"),
    (["memory.mlp_tile_tokens=0"], "memory.mlp_tile_tokens=0 must be an integer >= 1"),
    (["memory.mlp_tile_tokens=null"], "memory.checkpointing='tiled' with memory.mlp_tile_tokens=null"),
    (["memory.loss_tile_tokens=-3"], "memory.loss_tile_tokens=-3 must be an integer >= 1"),
    (["memory.offload_layers_in_flight=0"], "memory.offload_layers_in_flight=0 must be an integer >= 1"),
    (["parallel.offload_activations=true"], "parallel.offload_activations=True was replaced by the memory group: "
                                            "use memory.offload=all"),
])
def test_bad_memory_settings_are_rejected_before_any_work(overrides, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        compose_run_config(overrides)


def test_memory_config_validates_at_construction():
    with pytest.raises(ConfigError, match="memory.checkpointing='partial'"):
        MemoryConfig(checkpointing="partial")
    assert MemoryConfig(checkpointing="none", offload="all").offload == "all"
