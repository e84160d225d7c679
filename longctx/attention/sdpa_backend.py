"""The "sdpa" local-attention backend: torch's flash SDPA ops, which return the log-sum-exp.

Implements the backend interface of ``longctx.attention.backends`` (shapes and
mask in ``longctx.attention.reference``). The (doc, pos) mask is decomposed
into full and square causal blocks (``longctx.attention.segments``); results
merge by log-sum-exp in fp32 and backward runs every block against the final
out and lse, so partial gradients add up exactly.

- CPU: ``aten::_scaled_dot_product_flash_attention_for_cpu`` and its
  ``_backward``, one call per block, layout `[1, H, S, D]`; its logsumexp is
  `[1, H, S]` natural log, transposed here to the interface's `[S, H]`.
- CUDA: ``aten::_flash_attention_forward`` / ``_flash_attention_backward``
  in varlen mode (cum_seq_q/k), one call per block kind; its logsumexp is
  `[H, total_q]` natural log, transposed to `[total_q, H]`. fp16/bf16 only
  (fp32 raises a ValueError naming the fix); head_dim zero-padded to a
  multiple of 8.

GQA: K/V heads are expanded locally (memory only, never on the wire) and dK/dV
summed back over each group.
"""
from __future__ import annotations

import torch

from longctx.attention.segments import (
    VarlenBatch, blockwise_backward, blockwise_forward, expand_kv, pad_head_dim, reduce_kv_grad,
    require_half_precision,
)


def why_unavailable(device: torch.device) -> str | None:
    """None when the backend runs on `device`, else why not."""
    if device.type == "cpu":
        return None
    if device.type == "cuda" and torch.cuda.is_available():
        return None
    return f"the sdpa backend runs on CPU or CUDA tensors; got device {device}"


def _bhsd(x: torch.Tensor) -> torch.Tensor:
    """`[S, H, D]` -> `[1, H, S, D]` view."""
    return x.unsqueeze(0).transpose(1, 2)


def _shd(x: torch.Tensor) -> torch.Tensor:
    """`[1, H, S, D]` -> `[S, H, D]`."""
    return x.squeeze(0).transpose(0, 1)


def _block_slices(batch: VarlenBatch) -> list[tuple[slice, slice]]:
    cu_q, cu_k = batch.cu_q.tolist(), batch.cu_k.tolist()
    return [(slice(cu_q[i], cu_q[i + 1]), slice(cu_k[i], cu_k[i + 1])) for i in range(len(batch.blocks))]


def _cpu_forward(q, k, v, batch: VarlenBatch, scale: float):
    op = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
    outs, lses = [], []
    for qs, ks in _block_slices(batch):
        out, lse = op(_bhsd(q[qs]), _bhsd(k[ks]), _bhsd(v[ks]), 0.0, batch.causal, scale=scale)
        outs.append(_shd(out))
        lses.append(lse.squeeze(0).transpose(0, 1))  # [1, H, S] -> [S, H]
    return torch.cat(outs), torch.cat(lses).float()


def _cpu_backward(dout, q, k, v, out, lse, batch: VarlenBatch, scale: float):
    op = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward
    grads = [], [], []
    for qs, ks in _block_slices(batch):
        block_lse = lse[qs].transpose(0, 1).unsqueeze(0).contiguous()  # [S, H] -> [1, H, S]
        block = op(_bhsd(dout[qs]), _bhsd(q[qs]), _bhsd(k[ks]), _bhsd(v[ks]), _bhsd(out[qs]), block_lse,
                   0.0, batch.causal, scale=scale)
        for acc, g in zip(grads, block):
            acc.append(_shd(g))
    return tuple(torch.cat(g) for g in grads)


def _cuda_forward(q, k, v, batch: VarlenBatch, scale: float):
    head_dim = q.shape[-1]
    q, k, v = (pad_head_dim(t).contiguous() for t in (q, k, v))
    out, lse, *_ = torch.ops.aten._flash_attention_forward(
        q, k, v, batch.cu_q, batch.cu_k, batch.max_q, batch.max_k, 0.0, batch.causal, False, scale=scale
    )
    return out[..., :head_dim], lse.transpose(0, 1).float()  # lse [H, Tq] -> [Tq, H]


def _cuda_backward(dout, q, k, v, out, lse, batch: VarlenBatch, scale: float):
    head_dim = q.shape[-1]
    no_dropout_rng = torch.zeros(2, dtype=torch.int64, device=q.device)  # (seed, offset): unused without dropout
    unused = torch.empty((), dtype=torch.int64, device=q.device)
    grads = torch.ops.aten._flash_attention_backward(
        *(pad_head_dim(t).contiguous() for t in (dout, q, k, v, out)),
        lse.transpose(0, 1).contiguous(), batch.cu_q, batch.cu_k, batch.max_q, batch.max_k,
        0.0, batch.causal, no_dropout_rng, unused, scale=scale,
    )
    return tuple(g[..., :head_dim] for g in grads)


def _gqa_forward(q, k, v, batch: VarlenBatch, scale: float):
    kernel = _cuda_forward if q.device.type == "cuda" else _cpu_forward
    return kernel(q, expand_kv(k, q.shape[1]), expand_kv(v, q.shape[1]), batch, scale)


def _gqa_backward(dout, q, k, v, out, lse, batch: VarlenBatch, scale: float):
    kernel = _cuda_backward if q.device.type == "cuda" else _cpu_backward
    hq, hkv = q.shape[1], k.shape[1]
    dq, dk, dv = kernel(dout, q, expand_kv(k, hq), expand_kv(v, hq), out, lse, batch, scale)
    return dq, reduce_kv_grad(dk, hkv), reduce_kv_grad(dv, hkv)


def forward(q, k, v, q_doc, q_pos, k_doc, k_pos, softmax_scale):
    """Masked attention forward (out `[Nq, Hq, D]` in q's dtype, lse `[Nq, Hq]` fp32)."""
    if q.device.type == "cuda":
        require_half_precision("sdpa", q)
    return blockwise_forward(_gqa_forward, q, k, v, q_doc, q_pos, k_doc, k_pos, softmax_scale)


def backward(dout, q, k, v, out, lse, q_doc, q_pos, k_doc, k_pos, softmax_scale):
    """Masked attention backward against the final (out, lse): (dq, dk, dv) in the input dtypes."""
    if q.device.type == "cuda":
        require_half_precision("sdpa", q)
    return blockwise_backward(_gqa_backward, dout, q, k, v, out, lse, q_doc, q_pos, k_doc, k_pos, softmax_scale)
