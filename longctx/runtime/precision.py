"""Mixed precision: fp32 master weights, bf16 matmuls through autocast (``train.precision``).

What runs in which dtype under ``bf16``:

- parameters, their gradients, the gradient all-reduce / reduce-scatter and
  the optimizer states: fp32 (the parameters are the master weights);
- linear layers (Q/K/V/O, the MLP, the output head): bf16 (autocast casts the
  fp32 weight and the input, caching the weight's cast within a forward);
- attention: q/k/v in bf16 (as the linears produce them), the kernels keep
  their softmax statistics (lse), running output and merges in fp32; the
  decoder runs it with autocast off so the reference kernel's fp32 math is not
  cast down (`longctx.model.decoder`);
- RMSNorm, the RoPE tables and rotation, the residual stream (the embedding
  output is fp32, and fp32 + bf16 stays fp32), logits-to-loss: fp32.

Why autocast and not explicit casts or a bf16 model copy: the parameters the
optimizer, ZeRO sharding, gradient sync and checkpoints see stay plain fp32
leaves, with no second copy to keep in sync and nothing for those parts to
know; autocast's casts are differentiable, so the weight gradients arrive in
fp32 ``.grad``. Only the forward (and the loss) runs inside the context;
backward follows the dtypes the forward recorded.

``auto`` resolves to bf16 on CUDA and fp32 on CPU (the distributed training
tests compare with one process at 1e-5 in fp32); bf16 runs on CPU as well.
"""
from __future__ import annotations

import contextlib
from typing import ContextManager

import torch

#: the values ``train.precision`` accepts
PRECISIONS = ("auto", "bf16", "fp32")


def resolve_precision(requested: str, device: torch.device) -> str:
    """"bf16" or "fp32" for ``train.precision`` on `device` ("auto": bf16 on CUDA, fp32 elsewhere)."""
    if requested not in PRECISIONS:
        raise ValueError(f"train.precision={requested!r} is not supported; choose one of {list(PRECISIONS)}")
    if requested == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    return requested


def compute_autocast(precision: str, device: torch.device) -> ContextManager:
    """The context a step's forward and loss run in: autocast to bf16 for "bf16", nothing for "fp32"."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    if precision == "fp32":
        return contextlib.nullcontext()
    raise ValueError(f"compute_autocast: precision={precision!r} must be resolved first (bf16 or fp32)")
