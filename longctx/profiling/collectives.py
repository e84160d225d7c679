"""Scalars agreed by every rank: the maximum over ranks and rank 0's value (collectives)."""
from __future__ import annotations

import torch
import torch.distributed as dist


def max_over_ranks(value: float, device: torch.device) -> float:
    """The largest `value` over the world's ranks (collective; `device`: where the backend communicates)."""
    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return float(tensor.item())


def from_rank0(value: float, device: torch.device) -> float:
    """Rank 0's `value` on every rank (collective)."""
    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    dist.broadcast(tensor, src=0)
    return float(tensor.item())
