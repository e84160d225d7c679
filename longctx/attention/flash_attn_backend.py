"""The "flash_attn" local-attention backend: flash-attn 2's varlen functions (CUDA only).

Implements the backend interface of ``longctx.attention.backends`` (shapes and
mask in ``longctx.attention.reference``). The (doc, pos) mask is decomposed
into full and square causal blocks (``longctx.attention.segments``); all blocks
of one kind run in one ``_flash_attn_varlen_forward`` / ``_backward`` call with
cu_seqlens_q/k, results merge by log-sum-exp in fp32, and backward runs every
block against the final out and lse. flash-attn handles GQA natively (K/V are
not expanded). fp16/bf16 only; head_dim is zero-padded to a multiple of 8
(as flash-attn's own autograd wrapper does). Its varlen lse is `[H, total_q]` natural log, transposed here
to the interface's `[total_q, H]`. flash-attn is imported on first use only.
"""
from __future__ import annotations

import importlib
from types import ModuleType

import torch

from longctx.attention.segments import (
    VarlenBatch, blockwise_backward, blockwise_forward, pad_head_dim, require_half_precision,
)

_INTERFACE = "flash_attn.flash_attn_interface"


def why_unavailable(device: torch.device) -> str | None:
    """None when the backend runs on `device`, else why not."""
    if device.type != "cuda" or not torch.cuda.is_available():
        return f"the flash_attn backend runs on CUDA tensors only; got device {device}"
    try:
        importlib.import_module(_INTERFACE)
    except ImportError as exc:
        return f"flash-attn is not importable ({exc}); install it with `pip install flash-attn`"
    return None


def is_available() -> bool:
    """True when CUDA is available and flash-attn imports."""
    return why_unavailable(torch.device("cuda")) is None


def _interface() -> ModuleType:
    return importlib.import_module(_INTERFACE)


def _batch_forward(q, k, v, batch: VarlenBatch, scale: float):
    head_dim = q.shape[-1]
    q, k, v = (pad_head_dim(t).contiguous() for t in (q, k, v))
    out, lse, *_ = _interface()._flash_attn_varlen_forward(
        q=q, k=k, v=v, cu_seqlens_q=batch.cu_q, cu_seqlens_k=batch.cu_k,
        max_seqlen_q=batch.max_q, max_seqlen_k=batch.max_k, dropout_p=0.0, softmax_scale=scale,
        causal=batch.causal,
    )
    return out[..., :head_dim], lse.transpose(0, 1).float()  # lse [H, Tq] -> [Tq, H]


def _batch_backward(dout, q, k, v, out, lse, batch: VarlenBatch, scale: float):
    head_dim = q.shape[-1]
    dout, q, k, v, out = (pad_head_dim(t).contiguous() for t in (dout, q, k, v, out))
    dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
    _interface()._flash_attn_varlen_backward(
        dout=dout, q=q, k=k, v=v, out=out, softmax_lse=lse.transpose(0, 1).contiguous(),
        dq=dq, dk=dk, dv=dv, cu_seqlens_q=batch.cu_q, cu_seqlens_k=batch.cu_k, max_seqlen_q=batch.max_q,
        max_seqlen_k=batch.max_k, dropout_p=0.0, softmax_scale=scale, causal=batch.causal,
        window_size_left=-1, window_size_right=-1, softcap=0.0, alibi_slopes=None, deterministic=False,
    )
    return dq[..., :head_dim], dk[..., :head_dim], dv[..., :head_dim]


def forward(q, k, v, q_doc, q_pos, k_doc, k_pos, softmax_scale):
    """Masked attention forward (out `[Nq, Hq, D]` in q's dtype, lse `[Nq, Hq]` fp32)."""
    require_half_precision("flash_attn", q)
    return blockwise_forward(_batch_forward, q, k, v, q_doc, q_pos, k_doc, k_pos, softmax_scale)


def backward(dout, q, k, v, out, lse, q_doc, q_pos, k_doc, k_pos, softmax_scale):
    """Masked attention backward against the final (out, lse): (dq, dk, dv) in the input dtypes."""
    require_half_precision("flash_attn", q)
    return blockwise_backward(_batch_backward, dout, q, k, v, out, lse, q_doc, q_pos, k_doc, k_pos, softmax_scale)
