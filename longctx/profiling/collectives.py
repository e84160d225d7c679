"""Scalars agreed by every rank: the maximum and the sum over ranks and rank 0's value (collectives)."""
from __future__ import annotations

import torch
import torch.distributed as dist


def max_over_ranks(value: float, device: torch.device) -> float:
    """The largest `value` over the world's ranks (collective; `device`: where the backend communicates)."""
    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return float(tensor.item())


def sum_over_ranks(values: list[float], device: torch.device) -> list[float]:
    """Each of `values` summed over the world's ranks (collective)."""
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.tolist()


def from_rank0(value: float, device: torch.device) -> float:
    """Rank 0's `value` on every rank (collective)."""
    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    dist.broadcast(tensor, src=0)
    return float(tensor.item())
