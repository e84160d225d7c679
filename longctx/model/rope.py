"""Rotary position embedding, computed in fp32 from each token's position inside its own document.

Positions come from the packing (``ZigzagSharding.positions``), so a token's
angle depends only on where it sits in its document, never on where the
document landed in the packed batch or on which rank holds it.

Context extension stretches the frequencies (`RopeScaling`): ``linear``,
``llama3`` and ``yarn`` follow the definitions of Hugging Face transformers'
``modeling_rope_utils`` (computed here in fp64), and yarn's attention factor
multiplies the cos and sin tables, so it scales q and k alike.
"""
from __future__ import annotations

import math

import torch

from longctx.kernels import ops
from longctx.model.config import RopeScaling
from longctx.model.layers import at_least_fp32

NO_SCALING = RopeScaling()


def inverse_frequencies(head_dim: int, theta: float, scaling: RopeScaling = NO_SCALING,
                        device: torch.device | None = None) -> torch.Tensor:
    """Radians per token of each channel pair, fp64 `[head_dim // 2]`: ``theta ** (-2i / head_dim)``, scaled.

    linear: all divided by `factor`. llama3: wavelengths ``2 pi / f`` above
    ``original / low_freq_factor`` divided by `factor`, below ``original /
    high_freq_factor`` kept, in between ``(1 - s) f / factor + s f`` with
    ``s = (original / wavelength - low_freq_factor) / (high_freq_factor - low_freq_factor)``.
    yarn: ``f / factor * r + f * (1 - r)`` with r a ramp over the pair index
    from 0 (pairs that turn more than `beta_fast` times in the original
    context: extrapolated) to 1 (fewer than `beta_slow` turns: interpolated).
    """
    pairs = torch.arange(0, head_dim, 2, dtype=torch.float64, device=device)
    base = theta ** (-pairs / head_dim)
    if scaling.kind == "none":
        return base
    if scaling.kind == "linear":
        return base / scaling.factor
    if scaling.kind == "llama3":
        return _llama3(base, scaling)
    return _yarn(base, head_dim, theta, scaling)


def _llama3(base: torch.Tensor, scaling: RopeScaling) -> torch.Tensor:
    original, low, high = scaling.original_max_position_embeddings, scaling.low_freq_factor, scaling.high_freq_factor
    wavelength = 2 * math.pi / base
    smooth = (original / wavelength - low) / (high - low)
    medium = (1 - smooth) * base / scaling.factor + smooth * base
    scaled = torch.where(wavelength > original / low, base / scaling.factor, medium)
    return torch.where(wavelength < original / high, base, scaled)


def _yarn(base: torch.Tensor, head_dim: int, theta: float, scaling: RopeScaling) -> torch.Tensor:
    original = scaling.original_max_position_embeddings

    def pair_turning(rotations: float) -> float:
        """The (fractional) pair index whose channel turns `rotations` times over the original context."""
        return head_dim * math.log(original / (rotations * 2 * math.pi)) / (2 * math.log(theta))

    low, high = pair_turning(scaling.beta_fast), pair_turning(scaling.beta_slow)
    if scaling.truncate:
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, head_dim - 1)
    if low == high:
        high += 0.001  # as transformers: a ramp of zero width would divide by zero
    ramp = ((torch.arange(base.numel(), dtype=torch.float64, device=base.device) - low) / (high - low)).clamp(0, 1)
    return base / scaling.factor * ramp + base * (1 - ramp)


def attention_factor(scaling: RopeScaling) -> float:
    """Multiplier of the cos and sin tables: 1, except yarn's ``0.1 * ln(factor) + 1`` (or its mscale ratio)."""
    if scaling.kind != "yarn":
        return 1.0
    if scaling.attention_factor is not None:
        return float(scaling.attention_factor)

    def magnitude(scale: float) -> float:
        return 1.0 if scaling.factor <= 1 else 0.1 * scale * math.log(scaling.factor) + 1.0

    if scaling.mscale and scaling.mscale_all_dim:
        return magnitude(scaling.mscale) / magnitude(scaling.mscale_all_dim)
    return magnitude(1.0)


def rope_tables(positions: torch.Tensor, head_dim: int, theta: float,
                scaling: RopeScaling = NO_SCALING) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin tables, each fp32 `[n, head_dim // 2]`, for integer `positions` `[n]`.

    Angle of channel pair i at position p: ``p * inverse_frequencies(...)[i]``;
    the product is taken in fp64 and rounded once to fp32, so positions up to
    millions of tokens keep their precision. Both tables are multiplied by
    `attention_factor(scaling)` (1 except for yarn).
    """
    frequencies = inverse_frequencies(head_dim, theta, scaling, positions.device)
    angles = positions.to(torch.float64)[:, None] * frequencies[None, :]
    factor = attention_factor(scaling)
    return (torch.cos(angles) * factor).to(torch.float32), (torch.sin(angles) * factor).to(torch.float32)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate `x` `[n, heads, head_dim]` by the tables `[n, head_dim // 2]` (half-split pairs).

    Channel i pairs with channel i + head_dim/2 (the Llama convention). The
    rotation runs in fp32 (fp64 inputs stay fp64) and the result is cast back to x's dtype.
    On CUDA, with the compiled extension built, the fused op `longctx.kernels.ops.rope_tables` does it.
    """
    if cos.dtype == torch.float32 and ops.resolve_backend("rope_tables", x.device) == "cuda" \
            and x.dtype in (torch.float32, torch.float16, torch.bfloat16):
        return ops.rope_tables(x, cos, sin)
    half = x.shape[-1] // 2
    wide = at_least_fp32(x)
    first, second = wide[..., :half], wide[..., half:]
    cos, sin = cos[:, None, :], sin[:, None, :]
    rotated = torch.cat((first * cos - second * sin, second * cos + first * sin), dim=-1)
    return rotated.to(x.dtype)
