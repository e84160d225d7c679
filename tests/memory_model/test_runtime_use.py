"""The runtime uses the memory model: the planner's per-rank capacity and the config check before any process."""
from __future__ import annotations

import pytest

from longctx.model.config import ModelConfig
from longctx.runtime.config import ConfigError, MemoryConfig, ParallelConfig
from longctx.runtime.step_source import planning_setup
from longctx.runtime.train_cli import compose_run_config
from longctx.scheduler.memory_model import MemoryModel


def test_planner_capacity_is_the_memory_models():
    memory = MemoryConfig(optimizer_sharding="zero2", optimizer_offload=True)
    parallel = ParallelConfig(max_tokens_per_rank=None, memory_per_rank_gb=80.0)
    model = ModelConfig.preset("llama3-8b")
    cluster, cost_model = planning_setup(parallel, model, 8, memory, "bf16")
    expected = MemoryModel(model, memory, "bf16", 8, cost_model.reserved_gb * 1e9).max_tokens_per_rank(80e9)
    assert cost_model.max_tokens_per_rank(cluster) == expected > 0
    replicated = planning_setup(parallel, model, 8, MemoryConfig(), "bf16")[1]
    with pytest.raises(Exception, match="leaves no room for one token"):  # fp32 states of 8B: 128 GB > 80 GB
        replicated.max_tokens_per_rank(cluster)


def test_a_step_that_cannot_fit_is_rejected_naming_the_numbers():
    with pytest.raises(ConfigError) as error:
        compose_run_config(["model=llama3-8b", "parallel.nprocs=1", "parallel.max_tokens_per_rank=null",
                            "data.max_doc_tokens=1048576", "data.tokens_per_step=1048576", "train.precision=bf16",
                            "memory.optimizer_offload=true"])
    message = str(error.value)
    for part in ("data.max_doc_tokens=1048576", "1048576 tokens per rank", "parallel.memory_per_rank_gb=80.0",
                 "tokens per rank fit", "layer recompute"):
        assert part in message, message
    compose_run_config(["model=llama3-8b", "parallel.nprocs=8", "parallel.max_tokens_per_rank=null",
                        "data.max_doc_tokens=131072", "data.tokens_per_step=131072", "train.precision=bf16",
                        "memory.optimizer_sharding=zero2"])  # 16K tokens per rank fit
