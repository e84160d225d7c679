"""Merge partial attention results by their log-sum-exp, in fp32.

Attention over a key set split into blocks B1, B2 is exactly
``out = w1 * out1 + w2 * out2`` with ``w_i = exp(lse_i - lse)`` and
``lse = logaddexp(lse1, lse2)``. `torch.logaddexp` computes
``max + log1p(exp(-|a - b|))``, which never overflows; a row that saw no key
in either block (both lse = -inf) stays out 0, lse -inf instead of NaN.
`merge_block` is the ring's merge: the fused CUDA op in place on CUDA (when
the extension is built), this torch math elsewhere.
"""
from __future__ import annotations

import torch

from longctx.kernels import ops


def merge_partial(
    out: torch.Tensor, lse: torch.Tensor, block_out: torch.Tensor, block_lse: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fold one block's result into the running result.

    out `[N, H, D]` fp32 and lse `[N, H]` fp32: the running result (start with
    zeros and -inf). block_out `[N, H, D]` (any float dtype), block_lse `[N, H]`
    fp32. Returns the merged (out, lse), both fp32.
    """
    new_lse = torch.logaddexp(lse, block_lse)
    finite = torch.where(torch.isinf(new_lse), torch.zeros_like(new_lse), new_lse)
    weight_old = torch.exp(lse - finite).unsqueeze(-1)
    weight_new = torch.exp(block_lse - finite).unsqueeze(-1)
    return out * weight_old + block_out.float() * weight_new, new_lse


def merge_block(
    out: torch.Tensor, lse: torch.Tensor, block_out: torch.Tensor, block_lse: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """`merge_partial` for running results the caller owns (no autograd): on CUDA with the compiled
    extension built, `longctx.kernels.ops.lse_merge_` updates `out` and `lse` in place and returns them."""
    if ops.resolve_backend("lse_merge_", out.device) == "cuda" and out.is_contiguous() and lse.is_contiguous():
        ops.lse_merge_(out, lse, block_out, block_lse, backend="compiled")
        return out, lse
    return merge_partial(out, lse, block_out, block_lse)

