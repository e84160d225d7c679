"""Per-step memory metrics gathered from 4 gloo ranks: peaks per rank, offload traffic, exposed copy time."""
from __future__ import annotations

import pytest
import torch
import torch.distributed as dist

from longctx.runtime.activations import RankActivations
from longctx.runtime.config import MemoryConfig
from longctx.runtime.memory_metrics import GB, memory_metrics, model_state_bytes, start_step_memory
from longctx.runtime.process_groups import ProcessGroupCache
from longctx.runtime.step import run_plan
from longctx.scheduler import Plan
from tests.memory.memory_cases import model_and_sequences
from tests.runtime.test_plan_execution import SWITCHING_PLAN


def step_metrics_on_every_rank() -> tuple[dict, int, int]:
    """Two steps of SWITCHING_PLAN with offload=all; the second step's metrics, this rank's counts."""
    plan = Plan.from_dict(SWITCHING_PLAN).validate()
    model, sequences = model_and_sequences(list(plan.lengths))
    optimizer = torch.optim.AdamW(model.parameters())
    activations = RankActivations(MemoryConfig(checkpointing="full", offload="all"), model.parameters(),
                                  torch.device("cpu"))
    groups = ProcessGroupCache()
    groups.prepare(plan)
    for _ in range(2):
        start_step_memory(activations.accounting, torch.device("cpu"))
        model.zero_grad(set_to_none=True)
        run_plan(model, plan, sequences, dist.get_rank(), groups, activations=activations)
        optimizer.step()
    state = model_state_bytes(model, optimizer, optimizer_offloaded=False)
    metrics = memory_metrics(activations.accounting, torch.device("cpu"), state)
    return metrics, activations.accounting.offloaded_bytes, state


def test_memory_metrics_give_each_ranks_peak_and_the_worlds_offload_traffic(gloo_pool):
    results = gloo_pool(4).run(step_metrics_on_every_rank)
    metrics = results[0][0]
    assert all(r[0] == metrics for r in results)  # every rank holds the same gathered numbers
    tensors = list(model_and_sequences([1])[0].parameters())
    parameters = sum(p.numel() for p in tensors) * 4
    for rank, (_, offloaded, state) in enumerate(results):
        assert state == 4 * parameters + 4 * len(tensors)  # parameters, gradients, AdamW m, v and step counters
        assert metrics[f"memory/saved_peak_gb/rank{rank}"] == 0.0  # offload=all keeps nothing on the device
        assert metrics[f"memory/peak_gb/rank{rank}"] == state / GB
    assert metrics["memory/peak_measured"] == 0.0
    assert metrics["memory/offloaded_gb"] == metrics["memory/prefetched_gb"]
    assert metrics["memory/offloaded_gb"] == pytest.approx(sum(r[1] for r in results) / GB, rel=1e-12)
    assert metrics["memory/offloaded_gb"] > 0
    assert metrics["memory/exposed_copy_s"] > 0
