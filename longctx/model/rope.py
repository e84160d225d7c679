"""Rotary position embedding, computed in fp32 from each token's position inside its own document.

Positions come from the packing (``ZigzagSharding.positions``), so a token's
angle depends only on where it sits in its document, never on where the
document landed in the packed batch or on which rank holds it.
"""
from __future__ import annotations

import torch

from longctx.model.layers import at_least_fp32


def rope_tables(positions: torch.Tensor, head_dim: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin tables, each fp32 `[n, head_dim // 2]`, for integer `positions` `[n]`.

    Angle of channel pair i at position p: ``p * theta ** (-2i / head_dim)``; the
    product is taken in fp64 and rounded once to fp32, so positions up to
    millions of tokens keep their precision.
    """
    exponents = torch.arange(0, head_dim, 2, dtype=torch.float64, device=positions.device) / head_dim
    inverse_frequency = theta ** (-exponents)
    angles = positions.to(torch.float64)[:, None] * inverse_frequency[None, :]
    return torch.cos(angles).to(torch.float32), torch.sin(angles).to(torch.float32)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate `x` `[n, heads, head_dim]` by the tables `[n, head_dim // 2]` (half-split pairs).

    Channel i pairs with channel i + head_dim/2 (the Llama convention). The
    rotation runs in fp32 (fp64 inputs stay fp64) and the result is cast back to x's dtype.
    """
    half = x.shape[-1] // 2
    wide = at_least_fp32(x)
    first, second = wide[..., :half], wide[..., half:]
    cos, sin = cos[:, None, :], sin[:, None, :]
    rotated = torch.cat((first * cos - second * sin, second * cos + first * sin), dim=-1)
    return rotated.to(x.dtype)
