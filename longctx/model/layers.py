"""The decoder's small building blocks: RMSNorm and the SwiGLU feed-forward."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def at_least_fp32(x: torch.Tensor) -> torch.Tensor:
    """`x` in fp32, or unchanged when it is already fp32 or wider (fp64 stays fp64)."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


class RMSNorm(nn.Module):
    """``x / rms(x) * weight`` over the last dimension, computed in (at least) fp32, returned in x's dtype."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return rms_norm(x, self.weight, self.eps)


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """``x / rms(x) * weight`` for `x` `[..., dim]` and `weight` `[dim]`, in (at least) fp32, returned in x's dtype."""
    wide = at_least_fp32(x)
    normed = wide * torch.rsqrt(wide.pow(2).mean(-1, keepdim=True) + eps)
    return (normed * at_least_fp32(weight)).to(x.dtype)


class SwiGLU(nn.Module):
    """``down(silu(gate(x)) * up(x))``: `[n, dim]` -> `[n, dim]` through a hidden width `hidden`."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.gate = nn.Linear(dim, hidden, bias=False)
        self.up = nn.Linear(dim, hidden, bias=False)
        self.down = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return swiglu(x, self.gate.weight, self.up.weight, self.down.weight)


def swiglu(x: torch.Tensor, gate: torch.Tensor, up: torch.Tensor, down: torch.Tensor) -> torch.Tensor:
    """``down(silu(gate(x)) * up(x))`` for `x` `[n, dim]` and weight matrices `[hidden, dim]`, `[dim, hidden]`."""
    return F.linear(F.silu(F.linear(x, gate)) * F.linear(x, up), down)
