"""Split a (doc, pos)-masked attention into full and causal blocks for dense flash kernels.

Dense flash kernels (torch's SDPA flash op, flash-attn's varlen functions) know
two masks: none ("full") and top-left-aligned causal on a square block. A
(q buffer, k buffer) pair sorted by (doc, pos) decomposes exactly into such
blocks: cut each buffer into maximal *segments* (same document, consecutive
positions); for a query segment with positions [qa, qb] and a key segment of
the same document with positions [ka, kb]:

- kb <= qa: every query sees every key -> one full block;
- ka > qb: no query sees any key -> nothing;
- otherwise, with s = max(ka, qa), e = min(kb, qb): keys [ka, s) are seen by
  every query (full); keys [s, e] against queries [s, e] are a square causal
  block; queries (e, qb] see all keys [s, e] (full); keys after e are unseen.

Zigzag ring blocks are always one full or one causal block per pair. Blocks
of one kind are packed into one varlen batch (`VarlenBatch`): gathered query
rows and key rows with cumulative lengths, which a kernel runs in one call (or
one call per block). `blockwise_forward` / `blockwise_backward` implement the
local-kernel interface on top of such a batch kernel: partial results merge by
log-sum-exp (fp32), gradients scatter-add in fp32.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from longctx.attention.merge import merge_partial

#: CUDA flash kernels take these dtypes only
HALF_DTYPES = (torch.float16, torch.bfloat16)


@dataclass(frozen=True)
class Segment:
    """Buffer rows [start, end) of document `doc`, positions first_pos .. first_pos + end - start - 1."""

    doc: int
    start: int
    end: int
    first_pos: int

    @property
    def last_pos(self) -> int:
        return self.first_pos + self.end - self.start - 1


@dataclass(frozen=True)
class Block:
    """Query rows [q_start, q_end) x key rows [k_start, k_end); causal blocks are square and aligned."""

    q_start: int
    q_end: int
    k_start: int
    k_end: int
    causal: bool


@dataclass(frozen=True)
class VarlenBatch:
    """Blocks of one kind packed for a varlen kernel.

    q_index `[Tq]` / k_index `[Tk]` (int64): buffer rows gathered block after
    block; cu_q / cu_k `[blocks + 1]` int32 cumulative lengths; max_q / max_k
    the longest block; blocks the `Block`s in packing order.
    """

    blocks: tuple[Block, ...]
    q_index: torch.Tensor
    k_index: torch.Tensor
    cu_q: torch.Tensor
    cu_k: torch.Tensor
    max_q: int
    max_k: int
    causal: bool


def segments(doc: torch.Tensor, pos: torch.Tensor) -> list[Segment]:
    """Maximal runs of one document with consecutive positions in a (doc, pos)-sorted buffer."""
    n = doc.numel()
    if n == 0:
        return []
    doc, pos = doc.to("cpu", torch.int64), pos.to("cpu", torch.int64)
    breaks = (doc[1:] != doc[:-1]) | (pos[1:] != pos[:-1] + 1)
    starts = [0] + (torch.nonzero(breaks).flatten() + 1).tolist()
    ends = starts[1:] + [n]
    docs, first = doc[starts].tolist(), pos[starts].tolist()
    return [Segment(d, s, e, p) for d, s, e, p in zip(docs, starts, ends, first)]


def _pair_blocks(q: Segment, k: Segment) -> list[Block]:
    """The full / causal blocks of one query segment against one key segment of the same document."""
    if k.last_pos <= q.first_pos:
        return [Block(q.start, q.end, k.start, k.end, causal=False)]
    if k.first_pos > q.last_pos:
        return []
    s, e = max(k.first_pos, q.first_pos), min(k.last_pos, q.last_pos)
    q_row = lambda p: q.start + p - q.first_pos  # noqa: E731 - position -> buffer row
    k_row = lambda p: k.start + p - k.first_pos  # noqa: E731
    blocks = []
    if k.first_pos < s:
        blocks.append(Block(q.start, q.end, k.start, k_row(s), causal=False))
    blocks.append(Block(q_row(s), q_row(e) + 1, k_row(s), k_row(e) + 1, causal=True))
    if e < q.last_pos:
        blocks.append(Block(q_row(e) + 1, q.end, k_row(s), k_row(e) + 1, causal=False))
    return blocks


def attention_blocks(q_doc, q_pos, k_doc, k_pos) -> list[Block]:
    """Every full / causal block of the masked attention of the q buffer on the k buffer."""
    by_doc: dict[int, list[Segment]] = {}
    for seg in segments(k_doc, k_pos):
        by_doc.setdefault(seg.doc, []).append(seg)
    return [block for q in segments(q_doc, q_pos) for k in by_doc.get(q.doc, ()) for block in _pair_blocks(q, k)]


def _cumulative(lengths: list[int], device: torch.device) -> torch.Tensor:
    out = torch.zeros(len(lengths) + 1, dtype=torch.int32)
    out[1:] = torch.cumsum(torch.tensor(lengths, dtype=torch.int64), 0).to(torch.int32)
    return out.to(device)


def _ranges(pairs: list[tuple[int, int]], device: torch.device) -> torch.Tensor:
    return torch.cat([torch.arange(a, b, dtype=torch.int64) for a, b in pairs]).to(device)


def varlen_batches(q_doc, q_pos, k_doc, k_pos) -> list[VarlenBatch]:
    """The blocks packed into at most two batches: full blocks, then causal blocks."""
    blocks = attention_blocks(q_doc, q_pos, k_doc, k_pos)
    batches = []
    for causal in (False, True):
        kind = tuple(b for b in blocks if b.causal == causal)
        if not kind:
            continue
        q_lens, k_lens = [b.q_end - b.q_start for b in kind], [b.k_end - b.k_start for b in kind]
        batches.append(VarlenBatch(
            kind, _ranges([(b.q_start, b.q_end) for b in kind], q_doc.device),
            _ranges([(b.k_start, b.k_end) for b in kind], q_doc.device),
            _cumulative(q_lens, q_doc.device), _cumulative(k_lens, q_doc.device), max(q_lens), max(k_lens), causal,
        ))
    return batches


#: (q, k, v packed `[T, H, D]`, batch, scale) -> (out `[Tq, Hq, D]`, lse `[Tq, Hq]` fp32)
BatchForward = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, VarlenBatch, float], tuple]
#: (dout, q, k, v, out, lse packed, batch, scale) -> (dq, dk, dv) packed
BatchBackward = Callable[..., tuple]


def blockwise_forward(kernel: BatchForward, q, k, v, q_doc, q_pos, k_doc, k_pos, softmax_scale):
    """The local-kernel `forward` (see `longctx.attention.reference`) over a batch kernel."""
    out = torch.zeros(q.shape, dtype=torch.float32, device=q.device)
    lse = torch.full(q.shape[:2], float("-inf"), dtype=torch.float32, device=q.device)
    for batch in varlen_batches(q_doc, q_pos, k_doc, k_pos):
        packed_out, packed_lse = kernel(q[batch.q_index], k[batch.k_index], v[batch.k_index], batch, softmax_scale)
        offset = 0
        for b in batch.blocks:
            rows, n = slice(b.q_start, b.q_end), b.q_end - b.q_start
            out[rows], lse[rows] = merge_partial(
                out[rows], lse[rows], packed_out[offset : offset + n], packed_lse[offset : offset + n].float()
            )
            offset += n
    return out.to(q.dtype), lse


def blockwise_backward(kernel: BatchBackward, dout, q, k, v, out, lse, q_doc, q_pos, k_doc, k_pos, softmax_scale):
    """The local-kernel `backward` over a batch kernel; every block uses the final out and lse."""
    dq = torch.zeros(q.shape, dtype=torch.float32, device=q.device)
    dk = torch.zeros(k.shape, dtype=torch.float32, device=q.device)
    dv = torch.zeros(v.shape, dtype=torch.float32, device=q.device)
    for batch in varlen_batches(q_doc, q_pos, k_doc, k_pos):
        qi, ki = batch.q_index, batch.k_index
        pdq, pdk, pdv = kernel(dout[qi], q[qi], k[ki], v[ki], out[qi], lse[qi], batch, softmax_scale)
        dq.index_add_(0, qi, pdq.float())
        dk.index_add_(0, ki, pdk.float())
        dv.index_add_(0, ki, pdv.float())
    return dq.to(q.dtype), dk.to(k.dtype), dv.to(v.dtype)


def expand_kv(x: torch.Tensor, num_q_heads: int) -> torch.Tensor:
    """GQA: `[T, Hkv, D]` -> `[T, Hq, D]` (query head h reads kv head h // G); local memory only."""
    return x.repeat_interleave(num_q_heads // x.shape[1], dim=1)


def reduce_kv_grad(grad: torch.Tensor, num_kv_heads: int) -> torch.Tensor:
    """Inverse of `expand_kv` for gradients: `[T, Hq, D]` -> `[T, Hkv, D]`, summing each group (fp32)."""
    t, hq, d = grad.shape
    return grad.float().reshape(t, num_kv_heads, hq // num_kv_heads, d).sum(2)


def require_half_precision(backend: str, q: torch.Tensor) -> None:
    """Raise ValueError unless q is fp16/bf16 (CUDA flash kernels have no fp32 path)."""
    if q.dtype not in HALF_DTYPES:
        raise ValueError(
            f"backend={backend!r} on CUDA: q dtype {q.dtype} is not supported by the flash kernels; "
            f"cast q/k/v to bfloat16 or float16, or use backend='triton' or 'reference' for fp32"
        )


def pad_head_dim(x: torch.Tensor, multiple: int = 8) -> torch.Tensor:
    """Zero-pad the last dim of `[T, H, D]` to a multiple of `multiple` (flash kernels need D % 8 == 0).

    Zero columns leave q.k scores and delta = sum(dout * out) unchanged; slice results back to D.
    """
    extra = -x.shape[-1] % multiple
    return F.pad(x, (0, extra)) if extra else x
