"""Per-step memory metrics: peak memory per rank, saved-activation bytes, offload traffic, exposed copy time.

Gathered from every rank (collective) after the step:

* ``memory/peak_gb/rank{r}``: on CUDA ``torch.cuda.max_memory_allocated`` since the
  step began (measured, ``memory/peak_measured`` = 1); on CPU an account
  (``memory/peak_measured`` = 0): the hooks' saved-activation peak of the step
  (`SavedTensorAccounting.peak_resident_bytes`) + parameter + gradient bytes +
  the optimizer's fp32 masters and AdamW states (0 when ``memory.optimizer_offload``
  keeps them in host memory). Transient working sets are not in the CPU account.
* ``memory/saved_peak_gb/rank{r}``: the resident saved-activation peak counted by the hooks;
* ``memory/offloaded_gb``, ``memory/prefetched_gb``: bytes copied to / from the host store, all ranks;
* ``memory/exposed_copy_s``: the largest over ranks of the copy seconds not hidden behind compute
  (see `longctx.runtime.offload`).
"""
from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

from longctx.runtime.comm_device import comm_tensor
from longctx.runtime.memory_accounting import SavedTensorAccounting

GB = 1e9


def _bytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors if isinstance(t, torch.Tensor))


def model_state_bytes(model: nn.Module, torch_optimizer: torch.optim.Optimizer, optimizer_offloaded: bool) -> int:
    """Parameter + gradient bytes of `model` on its device, plus the optimizer's masters and states unless
    offloaded. Parameters count their allocated storage: 0 for weights a parameter offload released
    (`longctx.runtime.param_offload`); streamed gradients are in host accumulators, not ``.grad``."""
    params = list(model.parameters())
    total = sum(p.untyped_storage().nbytes() for p in params) + _bytes(p.grad for p in params)
    if optimizer_offloaded:
        return total
    model_storages = {p.untyped_storage().data_ptr() for p in params}
    masters = [p for group in torch_optimizer.param_groups for p in group["params"]
               if p.untyped_storage().data_ptr() not in model_storages]
    states = [value for state in torch_optimizer.state.values() for value in state.values()]
    return total + _bytes(masters) + _bytes(m.grad for m in masters) + _bytes(states)


def start_step_memory(accounting: SavedTensorAccounting, device: torch.device) -> None:
    """Reset the step's peaks (call before the step's first micro-batch)."""
    accounting.reset()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def memory_metrics(accounting: SavedTensorAccounting, device: torch.device, state_bytes: int) -> dict[str, float]:
    """The step's memory metrics of every rank (collective; see the module docstring)."""
    measured = device.type == "cuda"
    peak = torch.cuda.max_memory_allocated(device) if measured else accounting.peak_resident_bytes + state_bytes
    mine = comm_tensor([peak / GB, accounting.peak_resident_bytes / GB, accounting.offloaded_bytes / GB,
                        accounting.prefetched_bytes / GB, accounting.exposed_copy_s], torch.float64)
    rows = [torch.zeros_like(mine) for _ in range(dist.get_world_size())]
    dist.all_gather(rows, mine)
    table = torch.stack(rows).cpu()
    metrics = {"memory/peak_measured": float(measured),
               "memory/offloaded_gb": float(table[:, 2].sum()),
               "memory/prefetched_gb": float(table[:, 3].sum()),
               "memory/exposed_copy_s": float(table[:, 4].max())}
    for rank, row in enumerate(table.tolist()):
        metrics[f"memory/peak_gb/rank{rank}"] = row[0]
        metrics[f"memory/saved_peak_gb/rank{rank}"] = row[1]
    return metrics
