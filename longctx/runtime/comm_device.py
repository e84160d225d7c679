"""The one place that decides where communication tensors live: the world backend's device.

A process group initialised with `nccl` alone has no CPU backend: a CPU tensor
handed to one of its collectives fails (or worse, hangs). Gloo runs on CPU
tensors. So the device of every tensor the runtime communicates (gradients,
metric rows, the stop vote, attention's K/V, object broadcasts) is chosen
here, from the world's backend, and the runtime's compute device is the same
device, so attention's P2P tensors (activations) are on it too.

No mixed ``cpu:gloo,cuda:nccl`` world is created: nothing in a step needs a
CPU collective on a GPU world (`broadcast_object_list` is given this device
and pickles through it; the DCP checkpoint's collectives are planned by torch
on the default group's device).
"""
from __future__ import annotations

import torch
import torch.distributed as dist

#: backend -> device type its collectives take
_BACKEND_DEVICE = {"nccl": "cuda", "gloo": "cpu"}


def comm_device(group: dist.ProcessGroup | None = None) -> torch.device:
    """The device of tensors handed to collectives and P2P ops on `group` (the world by default).

    nccl: this process's current CUDA device; gloo: cpu. Other backends raise
    (name the backend and the fix) rather than guess.
    """
    backend = dist.get_backend(group)
    kind = _BACKEND_DEVICE.get(str(backend))
    if kind is None:
        raise RuntimeError(f"comm_device: backend {backend!r} is not supported; initialise the world with "
                           f"one of {sorted(_BACKEND_DEVICE)}")
    if kind == "cuda":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def comm_tensor(values: list[float] | list[int], dtype: torch.dtype,
                group: dist.ProcessGroup | None = None) -> torch.Tensor:
    """A fresh 1-D tensor of `values` on `comm_device(group)`."""
    return torch.tensor(values, dtype=dtype, device=comm_device(group))


def gather_floats(values: list[float]) -> torch.Tensor:
    """`[world, len(values)]` float64 CPU rows: every rank's `values`, in rank order (collective on the world)."""
    mine = comm_tensor(values, torch.float64)
    rows = [torch.zeros_like(mine) for _ in range(dist.get_world_size())]
    dist.all_gather(rows, mine)
    return torch.stack(rows).cpu()
