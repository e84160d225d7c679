"""Gradient streaming and parameter offload on CUDA (pinned host copies, side-stream gradient copies).

An NCCL world of one on the GPU, fp32, three steps of a plan of several micro-batches: with both offloads
the summed gradients and the parameters equal those with both off (1e-5 relative: CUDA attention
backwards may accumulate in a different order run to run), no gradient stays on the device, offloaded
weights hold no device memory outside `weights()`, and the step's measured peak
(`torch.cuda.max_memory_allocated`) is lower by at least the model's parameter bytes.
"""
from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist

from longctx.runtime.config import MemoryConfig
from tests.memory.memory_cases import CONFIG
from tests.runtime import state_offload_cases as cases

TOLERANCE = 1e-5


def _relative(got: dict, want: dict) -> float:
    return max(float((got[k] - want[k]).abs().max() / max(float(want[k].abs().max()), 1e-30)) for k in want)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_both_offloads_on_cuda_equal_both_off_with_a_lower_measured_peak():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.cuda.set_device(0)
    dist.init_process_group("nccl", rank=0, world_size=1)
    activations = dict(checkpointing="full", offload="checkpoints", mlp_tile_tokens=7, loss_tile_tokens=50)
    try:
        off = cases.train_on_plans(CONFIG, MemoryConfig(**activations), device="cuda")
        on = cases.train_on_plans(CONFIG, MemoryConfig(optimizer_offload=True, param_offload=True, **activations),
                                  device="cuda")
    finally:
        dist.destroy_process_group()
    for step, (got, want) in enumerate(zip(on["gradients"], off["gradients"])):
        assert _relative(got, want) <= TOLERANCE, f"step {step}: summed gradient {_relative(got, want):.2e}"
    assert _relative(on["params"], off["params"]) <= TOLERANCE
    assert on["device_grads_left"] == [0, 0, 0] and on["resident_outside"] == [0] * 6
    assert 0 < on["stream_peak"] <= 2 * on["largest_layer"]
    model_bytes = sum(p.numel() * 4 for p in on["params"].values())
    assert on["device_peak"] <= off["device_peak"] - model_bytes, (on["device_peak"], off["device_peak"])
