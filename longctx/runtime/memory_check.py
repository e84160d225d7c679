"""The run's memory model (`longctx.scheduler.memory_model`) and the config check built on it. No torch.

`run_memory_model` is what the planner uses for its per-rank token capacity
(`longctx.runtime.step_source.planning_cost_model`); `check_step_fits`
rejects, before any process starts, a run whose longest sequence cannot fit
the world's device memory under its ``memory.*`` settings, naming the numbers.
"""
from __future__ import annotations

from longctx.model.config import ModelConfig
from longctx.runtime.config import ConfigError, MemoryConfig, RunConfig
from longctx.scheduler.cost_model import CostModel
from longctx.scheduler.memory_model import MemoryModel


def planning_precision(run: RunConfig) -> str:
    """The precision to plan for before the device is known: ``auto`` is bf16 under NCCL (CUDA), else fp32."""
    if run.train.precision != "auto":
        return run.train.precision
    return "bf16" if run.parallel.backend == "nccl" else "fp32"


def run_memory_model(model: ModelConfig, memory: MemoryConfig, precision: str, world_size: int,
                     reserved_gb: float = CostModel.reserved_gb) -> MemoryModel:
    """The memory model of a run: its shape, ``memory.*``, precision, world size and reserve."""
    return MemoryModel(model, memory, precision, world_size, reserved_gb * 1e9)


def check_step_fits(run: RunConfig) -> None:
    """ConfigError when ``data.max_doc_tokens`` cannot fit all ``parallel.nprocs`` ranks' device memory."""
    if run.parallel.max_tokens_per_rank is not None:
        return  # an explicit per-rank cap replaces the memory model (checked by RunConfig)
    world = run.parallel.nprocs
    group = run.parallel.cp if run.parallel.mode == "static" else world
    precision = planning_precision(run)
    memory_model = run_memory_model(run.model, run.memory, precision, world)
    capacity = memory_model.max_tokens_per_rank(run.parallel.memory_per_rank_gb * 1e9)
    need = -(-run.data.max_doc_tokens // group)
    if capacity >= need:
        return
    peak = memory_model.breakdown(need)
    parts = ", ".join(f"{k} {v / 1e9:.2f}" for k, v in sorted(peak.device.items(), key=lambda kv: -kv[1])[:5])
    raise ConfigError(
        f"data.max_doc_tokens={run.data.max_doc_tokens} over {group} rank(s) is {need} tokens per rank, whose step "
        f"needs {peak.peak_bytes / 1e9:.2f} GB per rank ({parts} GB; {precision}, memory.*={vars(run.memory)}) but "
        f"parallel.memory_per_rank_gb={run.parallel.memory_per_rank_gb}; at most {capacity} tokens per rank fit. "
        "Lower data.max_doc_tokens, use more ranks or memory, or save memory with memory.* "
        "(checkpointing, offload, tiles, optimizer_sharding/optimizer_offload); `longctx memory` shows the breakdown"
    )
