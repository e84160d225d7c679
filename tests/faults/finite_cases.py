"""Rank functions of test_nonfinite_faults (importable by the gloo pool's spawned ranks)."""
from __future__ import annotations

import torch
import torch.distributed as dist

from longctx.runtime.finite_guard import NonFiniteError, check_global_grad_norm, check_local_values


def local_check(bad_rank: int, what: str, step: int) -> str | None:
    """Run the local check with a NaN loss (`what="loss"`) or an inf gradient (`"grad"`) on `bad_rank`;
    returns the NonFiniteError message this rank raised (None if it did not raise)."""
    rank = dist.get_rank()
    parameter = torch.nn.Parameter(torch.ones(3))
    parameter.grad = torch.full((3,), 0.5)
    loss = 1.0
    if rank == bad_rank and what == "loss":
        loss = float("nan")
    if rank == bad_rank and what == "grad":
        parameter.grad[1] = float("inf")
    try:
        check_local_values(step, loss, [parameter.grad, None])
    except NonFiniteError as error:
        return str(error)
    return None


def global_check(grad_norm: float, step: int) -> str | None:
    try:
        check_global_grad_norm(step, grad_norm)
    except NonFiniteError as error:
        return str(error)
    return None
