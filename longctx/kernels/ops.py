"""Compiled ops with pure-torch fallbacks: zigzag shard index (C++), lse merge and RoPE (CUDA).

Every op takes ``backend``: "auto" (the compiled op when its extension is
already built — see :mod:`longctx.kernels.extension` — and the tensors are on
its device, else torch), "compiled" (JIT-builds if needed; raises when it
cannot run, saying why) or "torch". :func:`resolve_backend` reports which
implementation a call would use: "cpp", "cuda" or "torch".
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from longctx.kernels import extension, torch_fallbacks

_BACKENDS = ("auto", "compiled", "torch")
#: op -> (extension name, device type its compiled version runs on, reported name)
_COMPILED = {
    "zigzag_shard_index": ("host", "cpu", "cpp"),
    "lse_merge_": ("cuda", "cuda", "cuda"),
    "rope": ("cuda", "cuda", "cuda"),
    "rope_tables": ("cuda", "cuda", "cuda"),
}


def resolve_backend(op: str, device: torch.device | str, backend: str = "auto") -> str:
    """The implementation `op` uses for tensors on `device`: "cpp", "cuda" or "torch"."""
    if op not in _COMPILED:
        raise ValueError(f"unknown op {op!r}; choose one of {sorted(_COMPILED)}")
    if backend not in _BACKENDS:
        raise ValueError(f"{op}: backend {backend!r} unknown; choose one of {_BACKENDS}")
    if backend == "torch":
        return "torch"
    ext_name, ext_device, reported = _COMPILED[op]
    on_device = torch.device(device).type == ext_device
    if backend == "compiled":
        if not on_device:
            raise RuntimeError(f"{op}: the compiled op runs on {ext_device} tensors, got {device}; use backend='torch'")
        if extension.load(ext_name, build=True) is None:
            raise RuntimeError(f"{op}: compiled backend unavailable: {extension.why_unavailable(ext_name)}")
        return reported
    return reported if on_device and extension.load(ext_name) is not None else "torch"


@dataclass(frozen=True)
class ShardIndex:
    """One rank's zigzag shard of a packed batch (all int64, document-then-position order).

    token_index `[n_local]` indices into the packed global batch; doc_ids `[n_local]`;
    positions `[n_local]` inside each document (for RoPE and the attention mask);
    cu_seqlens `[docs+1]` local document boundaries; backend: "cpp" or "torch".
    """

    token_index: torch.Tensor
    doc_ids: torch.Tensor
    positions: torch.Tensor
    cu_seqlens: torch.Tensor
    backend: str


def _validated_cu_seqlens(cu_seqlens) -> torch.Tensor:
    cu = torch.as_tensor(cu_seqlens).to("cpu")
    if cu.dim() != 1 or cu.numel() < 1 or cu.dtype.is_floating_point:
        raise ValueError(f"cu_seqlens must be a 1-D integer list/tensor [docs+1], got {cu.dtype} shape {list(cu.shape)}")
    cu = cu.to(torch.int64)
    if int(cu[0]) != 0:
        raise ValueError(f"cu_seqlens must start at 0, got {int(cu[0])}; prepend 0")
    steps = cu[1:] - cu[:-1]
    if (steps <= 0).any():
        bad = int((steps <= 0).nonzero()[0])
        raise ValueError(f"cu_seqlens must be strictly increasing; cu_seqlens[{bad}]={int(cu[bad])} "
                         f">= cu_seqlens[{bad + 1}]={int(cu[bad + 1])} (drop empty documents)")
    return cu.contiguous()


def zigzag_shard_index(cu_seqlens, world_size: int, rank: int, *, backend: str = "auto") -> ShardIndex:
    """Which tokens rank `rank` of `world_size` owns under zigzag sharding, on the host.

    cu_seqlens: 1-D int list/tensor `[docs+1]`, starting at 0, strictly increasing. Each
    document splits into 2*world_size chunks whose sizes differ by at most one (leftover
    tokens rotate over the ranks across documents, see ``torch_fallbacks.zigzag_chunk_sizes``);
    the rank owns chunks rank and 2*world_size-1-rank: the layout of ``ZigzagSharding``.
    """
    if not isinstance(world_size, int) or world_size < 1:
        raise ValueError(f"world_size must be a positive int, got {world_size!r}")
    if not isinstance(rank, int) or not 0 <= rank < world_size:
        raise ValueError(f"rank must be an int in [0, {world_size}), got {rank!r}")
    cu = _validated_cu_seqlens(cu_seqlens)
    used = resolve_backend("zigzag_shard_index", "cpu", backend)
    if used == "cpp":
        parts = extension.load("host").zigzag_shard_index(cu, world_size, rank)
    else:
        parts = torch_fallbacks.zigzag_shard_index(cu, world_size, rank)
    return ShardIndex(*parts, backend=used)


def lse_merge_(out: torch.Tensor, lse: torch.Tensor, block_out: torch.Tensor, block_lse: torch.Tensor,
               *, backend: str = "auto") -> str:
    """Merge a partial attention block into the running (out, lse), in place; returns the backend used.

    out `[N, H, D]` fp32 accumulator, lse `[N, H]` fp32, block_out `[N, H, D]` (fp32/fp16/bf16),
    block_lse `[N, H]` fp32; a block row with lse -inf contributes nothing. No autograd.
    """
    if out.dim() != 3 or out.dtype != torch.float32:
        raise ValueError(f"lse_merge_: out must be fp32 [N, H, D], got {out.dtype} shape {list(out.shape)}")
    if block_out.shape != out.shape or block_out.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise ValueError(f"lse_merge_: block_out must be a float tensor of shape {list(out.shape)}, "
                         f"got {block_out.dtype} {list(block_out.shape)}")
    for name, t in (("lse", lse), ("block_lse", block_lse)):
        if t.shape != out.shape[:2] or t.dtype != torch.float32:
            raise ValueError(f"lse_merge_: {name} must be fp32 of shape {list(out.shape[:2])}, got {t.dtype} {list(t.shape)}")
    if any(t.device != out.device for t in (lse, block_out, block_lse)):
        raise ValueError("lse_merge_: out, lse, block_out and block_lse must be on one device")
    used = resolve_backend("lse_merge_", out.device, backend)
    if used == "cuda":
        if not (out.is_contiguous() and lse.is_contiguous()):
            raise ValueError("lse_merge_: out and lse are updated in place and must be contiguous")
        extension.load("cuda").lse_merge_(out, lse, block_out.contiguous(), block_lse.contiguous())
    else:
        torch_fallbacks.lse_merge_(out, lse, block_out, block_lse)
    return used


def _rope_dispatch(x: torch.Tensor, positions: torch.Tensor, inv_freq: torch.Tensor, sign: float, used: str):
    if used == "cuda":
        return extension.load("cuda").rope(x.contiguous(), positions.to(torch.int64).contiguous(), inv_freq, sign)
    return torch_fallbacks.rope(x, positions, inv_freq, sign)


class _Rope(torch.autograd.Function):
    """RoPE is a rotation, so its gradient is the inverse rotation of the output gradient."""

    @staticmethod
    def forward(ctx, x, positions, inv_freq, used):
        ctx.save_for_backward(positions, inv_freq)
        ctx.used = used
        return _rope_dispatch(x, positions, inv_freq, 1.0, used)

    @staticmethod
    def backward(ctx, grad_out):
        positions, inv_freq = ctx.saved_tensors
        return _rope_dispatch(grad_out, positions, inv_freq, -1.0, ctx.used), None, None, None


def rope(x: torch.Tensor, positions: torch.Tensor, *, base: float = 10000.0, backend: str = "auto") -> torch.Tensor:
    """Rotary embedding (rotate-half, Llama/HF inverse frequencies) at per-token positions.

    x `[tokens, heads, head_dim]` fp32/fp16/bf16 with even head_dim; positions `[tokens]`
    int (each token's position inside its document). Angles and rotation in fp32; returns
    x's dtype; differentiable in x.
    """
    if x.dim() != 3 or x.shape[-1] % 2 or x.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise ValueError(f"rope: x must be fp32/fp16/bf16 [tokens, heads, even head_dim], got {x.dtype} {list(x.shape)}")
    if positions.shape != x.shape[:1] or positions.dtype.is_floating_point or positions.device != x.device:
        raise ValueError(f"rope: positions must be an int tensor [{x.shape[0]}] on {x.device}, "
                         f"got {positions.dtype} {list(positions.shape)} on {positions.device}")
    if not base > 0:
        raise ValueError(f"rope: base must be positive, got {base!r}")
    used = resolve_backend("rope", x.device, backend)
    inv_freq = torch_fallbacks.rope_inverse_frequencies(x.shape[-1], base, x.device)
    return _Rope.apply(x, positions, inv_freq, used)


class _RopeTables(torch.autograd.Function):
    """The CUDA rotation by fp32 tables; its gradient is the inverse rotation (sign -1) of the output gradient."""

    @staticmethod
    def forward(ctx, x, cos, sin):
        ctx.save_for_backward(cos, sin)
        return extension.load("cuda").rope_tables(x.contiguous(), cos, sin, 1.0)

    @staticmethod
    def backward(ctx, grad_out):
        cos, sin = ctx.saved_tensors
        return extension.load("cuda").rope_tables(grad_out.contiguous(), cos, sin, -1.0), None, None


def rope_tables(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x `[tokens, heads, head_dim]` (fp32/fp16/bf16, CUDA) by fp32 tables cos/sin `[tokens, head_dim // 2]`.

    Channel i pairs with i + head_dim/2 (Llama); math in fp32, result in x's dtype; differentiable in x.
    The compiled CUDA op only (`longctx.model.rope.apply_rope` is the torch version and calls this on CUDA).
    """
    if x.dim() != 3 or x.shape[-1] % 2 or x.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise ValueError(f"rope_tables: x must be fp32/fp16/bf16 [tokens, heads, even head_dim], "
                         f"got {x.dtype} {list(x.shape)}")
    want = (x.shape[0], x.shape[-1] // 2)
    for name, t in (("cos", cos), ("sin", sin)):
        if tuple(t.shape) != want or t.dtype != torch.float32 or t.device != x.device:
            raise ValueError(f"rope_tables: {name} must be fp32 {list(want)} on {x.device}, "
                             f"got {t.dtype} {list(t.shape)} on {t.device}")
    resolve_backend("rope_tables", x.device, "compiled")
    return _RopeTables.apply(x, cos.contiguous(), sin.contiguous())

