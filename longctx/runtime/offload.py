"""Activation offload: keep the tensors autograd saves for backward in pinned host memory.

`activation_offload(True, cuda_device)` wraps a forward in
`torch.autograd.graph.save_on_cpu(pin_memory=True)`: every saved activation is
copied to host memory during the forward and brought back in the backward, so
device memory holds roughly one layer's working set instead of all layers'
activations, at the price of PCIe traffic (the copies run on the current
stream, so they are ordered with the kernels that use them: no races, no
overlap either).

On CPU tensors this is a no-op - the activations already live in host memory -
so it returns a null context, and `offload_active` says False so the tracker
does not claim an offload that does not happen.
"""
from __future__ import annotations

import contextlib

import torch


def offload_active(enabled: bool, device: torch.device) -> bool:
    """True when `enabled` would really move activations (only on accelerator devices)."""
    return enabled and device.type == "cuda"


def activation_offload(enabled: bool, device: torch.device) -> contextlib.AbstractContextManager:
    """The context to run a forward in: `save_on_cpu` when active, else a null context."""
    if offload_active(enabled, device):
        return torch.autograd.graph.save_on_cpu(pin_memory=True)
    return contextlib.nullcontext()
