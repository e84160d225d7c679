"""Where the optimizer's fp32 master weights and AdamW states live: the device, or a host store.

With ``memory.optimizer_offload`` the master weights and AdamW moments are
allocated in host memory (pinned when CUDA is present, so copies to and from
the device run asynchronously), reduced gradient slices are copied out to it
bucket by bucket as each reduction finishes (`to_store`), AdamW steps there on
the CPU, and the updated slices travel back inside the parameter all-gather.
On a CPU-only machine the "device" is host memory too; the store is then a
separate set of CPU tensors reached through the same calls, so the ordering
and exactness of the offloaded path are tested without a GPU.
"""
from __future__ import annotations

import torch


def store_device(offload: bool, parameter_device: torch.device) -> torch.device:
    """The device that holds master weights and AdamW states: the host when offloading."""
    return torch.device("cpu") if offload else parameter_device


def new_store_tensor(values: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A fresh fp32 copy of `values` on `device` (pinned host memory when CUDA is present)."""
    pin = device.type == "cpu" and torch.cuda.is_available()
    out = torch.empty(values.shape, dtype=torch.float32, device=device, pin_memory=pin)
    out.copy_(values)
    return out


def to_store(values: torch.Tensor, device: torch.device) -> torch.Tensor:
    """`values` on the store's `device` as fp32; from CUDA to host this copy is asynchronous (see `wait`)."""
    if values.device == device:
        return values.to(torch.float32)
    pin = device.type == "cpu" and values.device.type == "cuda"
    out = torch.empty(values.shape, dtype=torch.float32, device=device, pin_memory=pin)
    out.copy_(values, non_blocking=True)
    return out


def wait(parameter_device: torch.device) -> None:
    """Block until the copies queued on `parameter_device`'s current stream are done (no-op on CPU)."""
    if parameter_device.type == "cuda":
        torch.cuda.current_stream(parameter_device).synchronize()
