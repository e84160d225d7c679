"""The "triton" local-attention backend: document-masked causal attention with log-sum-exp.

Implements the backend interface of ``longctx.attention.backends``::

    forward(q, k, v, q_doc, q_pos, k_doc, k_pos, softmax_scale) -> (out, lse)
    backward(dout, q, k, v, out, lse, q_doc, q_pos, k_doc, k_pos, softmax_scale) -> (dq, dk, dv)

q `[Nq, Hq, D]`, k/v `[Nk, Hkv, D]` (query head h reads kv head ``h // (Hq // Hkv)``;
K/V are never repeated), q_doc/q_pos `[Nq]`, k_doc/k_pos `[Nk]` int32/int64, each
buffer sorted by (doc, pos) with non-negative docs and positions below 2**31.
Query i sees key j iff ``q_doc[i] == k_doc[j] and k_pos[j] <= q_pos[i]``, so a ring
step's chunk-vs-chunk block is one call with the chunks' global positions.
out is in q's dtype, lse `[Nq, Hq]` fp32 natural-log (-inf and out 0 for a row that
sees no key). Inputs fp16/bf16/fp32, fp32 accumulation; fp32 dots run in IEEE
precision (no TF32). Any head_dim 1..256 (padded to a power of two >= 16 in registers).

Key ranges per tile are found on the torch side (:mod:`longctx.kernels.tile_ranges`);
tiles the mask empties are never computed. Kernels run on CUDA, or on CPU tensors
under Triton's interpreter (``TRITON_INTERPRET=1`` set before ``triton`` is first
imported in the process), which the CPU tests use.
"""
from __future__ import annotations

import importlib
import math
import os
from dataclasses import dataclass
from types import ModuleType

import torch

from longctx.kernels.tile_ranges import key_ranges_per_query_tile, query_ranges_per_key_tile

_KERNELS_MODULE = "longctx.kernels.triton_attention_kernels"
_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
_INDEX_DTYPES = (torch.int32, torch.int64)
_MAX_HEAD_DIM = 256
_LOG2E = math.log2(math.e)


def why_unavailable() -> str | None:
    """None when the backend can run here, else a sentence saying why not."""
    try:
        importlib.import_module("triton")
    except ImportError as exc:  # pragma: no cover - triton is a test dependency
        return f"triton is not importable ({exc}); install it with `pip install triton`"
    if torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") == "1":
        return None
    return "no CUDA device (CPU tensors need Triton's interpreter: TRITON_INTERPRET=1)"


def is_available() -> bool:
    """True when triton imports and CUDA is available (or Triton's interpreter is on)."""
    return why_unavailable() is None


@dataclass(frozen=True)
class TileConfig:
    """Tile sizes (rows) and launch settings of the three attention kernels."""

    fwd_m: int
    fwd_n: int
    dq_m: int
    dq_n: int
    dkdv_m: int
    dkdv_n: int
    num_warps: int
    num_stages: int


def tile_config(device: torch.device, dtype: torch.dtype, head_dim: int) -> TileConfig:
    """Tiles for a device, dtype and head_dim.

    CPU (interpreter): 16-row tiles, so tiny test shapes span several tiles.
    CUDA: starting points from the Triton fused-attention tutorial, smaller for
    fp32 and for head_dim > 128 (shared memory).
    """
    if device.type != "cuda":
        return TileConfig(16, 16, 16, 16, 16, 16, num_warps=1, num_stages=1)
    if dtype == torch.float32 or head_dim > 128:
        return TileConfig(64, 32, 64, 32, 32, 64, num_warps=4, num_stages=2)
    warps = 8 if head_dim > 64 else 4
    return TileConfig(128, 64, 64, 64, 64, 64, num_warps=warps, num_stages=3 if head_dim > 64 else 4)


def _kernels(device: torch.device) -> ModuleType:
    """Import the @triton.jit kernels (first use), checking they can run on `device`."""
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"triton attention: tensors on device {device} are not supported; use cuda")
    module = importlib.import_module(_KERNELS_MODULE)
    if device.type == "cpu":
        import triton.language as tl
        from triton.runtime.interpreter import InterpretedFunction

        if not all(isinstance(f, InterpretedFunction) for f in (tl.sum, module.attention_fwd_kernel)):
            raise RuntimeError(
                "triton attention got CPU tensors, which need Triton's interpreter: set TRITON_INTERPRET=1 "
                "before triton is first imported in this process, or use the 'reference' backend on CPU"
            )
    return module


def _check_index(name: str, t: torch.Tensor, n: int, device: torch.device) -> None:
    if t.dim() != 1 or t.shape[0] != n:
        raise ValueError(f"triton attention: {name} must have shape [{n}], got {list(t.shape)}")
    if t.dtype not in _INDEX_DTYPES:
        raise ValueError(f"triton attention: {name} dtype {t.dtype} is not int32/int64; cast it")
    if t.device != device:
        raise ValueError(f"triton attention: {name} is on {t.device} but q is on {device}; move it")


def _check_inputs(q, k, v, q_doc, q_pos, k_doc, k_pos, softmax_scale) -> None:
    """Raise ValueError naming the field, value and fix for anything the kernels cannot take."""
    for name, t in (("q", q), ("k", k), ("v", v)):
        if t.dim() != 3:
            raise ValueError(f"triton attention: {name} must be [tokens, heads, head_dim], got shape {list(t.shape)}")
        if t.dtype not in _DTYPES:
            raise ValueError(f"triton attention: {name} dtype {t.dtype} unsupported; use fp16, bf16 or fp32")
        if t.device != q.device:
            raise ValueError(f"triton attention: {name} is on {t.device} but q is on {q.device}")
    if k.dtype != q.dtype or v.dtype != q.dtype:
        raise ValueError(f"triton attention: q/k/v dtypes differ ({q.dtype}, {k.dtype}, {v.dtype}); cast to one")
    if k.shape != v.shape:
        raise ValueError(f"triton attention: k shape {list(k.shape)} != v shape {list(v.shape)}")
    (_, hq, d), (_, hkv, dk) = q.shape, k.shape
    if dk != d:
        raise ValueError(f"triton attention: k head_dim {dk} != q head_dim {d}")
    if not 1 <= d <= _MAX_HEAD_DIM:
        raise ValueError(f"triton attention: head_dim {d} outside 1..{_MAX_HEAD_DIM}; use the reference backend")
    if hkv == 0 or hq % hkv != 0:
        raise ValueError(f"triton attention: query heads {hq} not a multiple of kv heads {hkv} (GQA needs Hq % Hkv == 0)")
    _check_index("q_doc", q_doc, q.shape[0], q.device)
    _check_index("q_pos", q_pos, q.shape[0], q.device)
    _check_index("k_doc", k_doc, k.shape[0], q.device)
    _check_index("k_pos", k_pos, k.shape[0], q.device)
    if not (isinstance(softmax_scale, (int, float)) and math.isfinite(softmax_scale) and softmax_scale > 0):
        raise ValueError(f"triton attention: softmax_scale must be a finite positive float, got {softmax_scale!r}")


def _rows_contiguous(t: torch.Tensor) -> torch.Tensor:
    """The kernels take any token/head strides but need the head_dim stride to be 1."""
    return t if t.stride(-1) == 1 else t.contiguous()


def _int32(t: torch.Tensor) -> torch.Tensor:
    return t.to(torch.int32).contiguous()


def _next_power_of_2(n: int) -> int:
    return 1 << (n - 1).bit_length()


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _dot_precision(device: torch.device, dtype: torch.dtype) -> str:
    """IEEE fp32 dots for fp32 inputs; bf16 on the CPU interpreter multiplies in fp32 (see `_dot`)."""
    if dtype == torch.float32:
        return "ieee"
    return "upcast" if device.type == "cpu" and dtype == torch.bfloat16 else "tf32"


def kernel_meta(device: torch.device, dtype: torch.dtype, head_dim: int, group: int) -> tuple[dict, TileConfig]:
    """Compile-time arguments shared by the three attention kernels, and the tile config."""
    cfg = tile_config(device, dtype, head_dim)
    meta = dict(
        GROUP=group,
        HEAD_DIM=head_dim,
        BLOCK_D=max(16, _next_power_of_2(head_dim)),
        DOT_PRECISION=_dot_precision(device, dtype),
        num_warps=cfg.num_warps,
        num_stages=cfg.num_stages,
    )
    return meta, cfg


def forward(q, k, v, q_doc, q_pos, k_doc, k_pos, softmax_scale):
    """Return (out `[Nq, Hq, D]` in q's dtype, lse `[Nq, Hq]` fp32); see the module docstring."""
    _check_inputs(q, k, v, q_doc, q_pos, k_doc, k_pos, softmax_scale)
    n_q, hq, _ = q.shape
    if n_q == 0 or k.shape[0] == 0:
        return torch.zeros_like(q), torch.full((n_q, hq), float("-inf"), dtype=torch.float32, device=q.device)
    out = torch.empty_like(q, memory_format=torch.contiguous_format)  # every row is written
    lse = torch.empty((n_q, hq), dtype=torch.float32, device=q.device)
    kernels = _kernels(q.device)
    q, k, v = _rows_contiguous(q), _rows_contiguous(k), _rows_contiguous(v)
    q_doc, q_pos, k_doc, k_pos = _int32(q_doc), _int32(q_pos), _int32(k_doc), _int32(k_pos)
    meta, cfg = kernel_meta(q.device, q.dtype, q.shape[2], q.shape[1] // k.shape[1])
    key_ranges = key_ranges_per_query_tile(q_doc, q_pos, k_doc, k_pos, cfg.fwd_m)
    kernels.attention_fwd_kernel[(key_ranges[0].numel(), hq)](
        q, k, v, out, lse, q_doc, q_pos, k_doc, k_pos, *key_ranges,
        float(softmax_scale) * _LOG2E, n_q,
        q.stride(0), q.stride(1), k.stride(0), k.stride(1), v.stride(0), v.stride(1), out.stride(0), out.stride(1),
        BLOCK_M=cfg.fwd_m, BLOCK_N=cfg.fwd_n, **meta,
    )
    return out, lse


def backward(dout, q, k, v, out, lse, q_doc, q_pos, k_doc, k_pos, softmax_scale):
    """Return (dq `[Nq, Hq, D]`, dk `[Nk, Hkv, D]`, dv `[Nk, Hkv, D]`) in the inputs' dtypes.

    `out` and `lse` are the FINAL (merged over all key blocks) output and log-sum-exp of
    the query rows, as in flash-attention's ring backward; dout `[Nq, Hq, D]`.
    """
    _check_inputs(q, k, v, q_doc, q_pos, k_doc, k_pos, softmax_scale)
    n_q, hq, _ = q.shape
    n_k, hkv, _ = k.shape
    for name, t in (("dout", dout), ("out", out)):
        if t.shape != q.shape:
            raise ValueError(f"triton attention backward: {name} shape {list(t.shape)} != q shape {list(q.shape)}")
    if lse.shape != (n_q, hq):
        raise ValueError(f"triton attention backward: lse shape {list(lse.shape)} != [{n_q}, {hq}]")
    if n_q == 0 or n_k == 0:
        return torch.zeros_like(q), torch.zeros_like(k), torch.zeros_like(v)
    dq, dk, dv = (torch.empty_like(t, memory_format=torch.contiguous_format) for t in (q, k, v))  # all written
    kernels = _kernels(q.device)
    q, k, v = _rows_contiguous(q), _rows_contiguous(k), _rows_contiguous(v)
    dout, out = _rows_contiguous(dout), _rows_contiguous(out)
    lse = lse.to(torch.float32).contiguous()
    q_doc, q_pos, k_doc, k_pos = _int32(q_doc), _int32(q_pos), _int32(k_doc), _int32(k_pos)
    meta, cfg = kernel_meta(q.device, q.dtype, q.shape[2], q.shape[1] // k.shape[1])
    scale = float(softmax_scale)

    delta = torch.empty((n_q, hq), dtype=torch.float32, device=q.device)
    kernels.attention_bwd_delta_kernel[(_cdiv(n_q, cfg.dq_m), hq)](
        out, dout, delta, n_q, out.stride(0), out.stride(1), dout.stride(0), dout.stride(1),
        HEAD_DIM=meta["HEAD_DIM"], BLOCK_D=meta["BLOCK_D"], BLOCK_M=cfg.dq_m,
    )
    strides = (q.stride(0), q.stride(1), k.stride(0), k.stride(1), v.stride(0), v.stride(1),
               dout.stride(0), dout.stride(1))
    query_ranges = query_ranges_per_key_tile(q_doc, q_pos, k_doc, k_pos, cfg.dkdv_n)
    kernels.attention_bwd_dkdv_kernel[(query_ranges[0].numel(), hkv)](
        q, k, v, dout, lse, delta, dk, dv, q_doc, q_pos, k_doc, k_pos, *query_ranges,
        scale, scale * _LOG2E, n_k, hq, *strides,
        dk.stride(0), dk.stride(1), dv.stride(0), dv.stride(1),
        BLOCK_M=cfg.dkdv_m, BLOCK_N=cfg.dkdv_n, **meta,
    )
    key_ranges = key_ranges_per_query_tile(q_doc, q_pos, k_doc, k_pos, cfg.dq_m)
    kernels.attention_bwd_dq_kernel[(key_ranges[0].numel(), hq)](
        q, k, v, dout, lse, delta, dq, q_doc, q_pos, k_doc, k_pos, *key_ranges,
        scale, scale * _LOG2E, n_q, *strides, dq.stride(0), dq.stride(1),
        BLOCK_M=cfg.dq_m, BLOCK_N=cfg.dq_n, **meta,
    )
    return dq, dk, dv
