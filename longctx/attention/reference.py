"""Pure-torch attention backend over (doc, pos)-sorted buffers: exact, fp32, chunked.

Implements the local-kernel interface every backend shares::

    forward(q, k, v, q_doc, q_pos, k_doc, k_pos, softmax_scale) -> (out, lse)
    backward(dout, q, k, v, out, lse, q_doc, q_pos, k_doc, k_pos, softmax_scale) -> (dq, dk, dv)

q `[Nq, Hq, D]`, k/v `[Nk, Hkv, D]` (query head h uses kv head h // (Hq // Hkv));
query i sees key j iff ``q_doc[i] == k_doc[j] and k_pos[j] <= q_pos[i]``. out is
in q's dtype, lse `[Nq, Hq]` fp32 (natural log of the summed exponentiated
scaled scores; -inf and out 0 for a row that sees nothing). backward takes the
final out and lse of the rows and returns gradients in the input dtypes.

Work is done in query tiles of `QUERY_TILE` rows against key tiles of
`KEY_TILE` keys, restricted to the keys whose documents the query tile spans,
so memory stays bounded by ``Hq * QUERY_TILE * KEY_TILE`` fp32 scores.
"""
from __future__ import annotations

from typing import Iterator

import torch

from longctx.attention.merge import merge_partial

#: query rows per tile
QUERY_TILE = 256
#: keys per tile
KEY_TILE = 1024


def _tiles(q_doc: torch.Tensor, k_doc: torch.Tensor) -> Iterator[tuple[int, int, int, int]]:
    """(q_start, q_end, k_start, k_end) of every query tile x key tile that shares a document."""
    nq = q_doc.numel()
    for qs in range(0, nq, QUERY_TILE):
        qe = min(qs + QUERY_TILE, nq)
        first_doc, last_doc = q_doc[qs : qs + 1], q_doc[qe - 1 : qe]
        k_lo = int(torch.searchsorted(k_doc, first_doc, right=False))
        k_hi = int(torch.searchsorted(k_doc, last_doc, right=True))
        for ks in range(k_lo, k_hi, KEY_TILE):
            yield qs, qe, ks, min(ks + KEY_TILE, k_hi)


def _visible(q_doc, q_pos, k_doc, k_pos) -> torch.Tensor:
    """Mask `[nq, nk]`: query i sees key j."""
    return (q_doc[:, None] == k_doc[None, :]) & (k_pos[None, :] <= q_pos[:, None])


def _head_major(x: torch.Tensor, hkv: int) -> torch.Tensor:
    """`[n, H, D]` -> fp32 `[Hkv, H // Hkv, n, D]` (query heads grouped under their kv head)."""
    n, h, d = x.shape
    return x.float().reshape(n, hkv, h // hkv, d).permute(1, 2, 0, 3)


def _token_major(x: torch.Tensor) -> torch.Tensor:
    """Inverse of `_head_major`: `[Hkv, G, n, D]` -> `[n, Hkv * G, D]`."""
    hkv, g, n, d = x.shape
    return x.permute(2, 0, 1, 3).reshape(n, hkv * g, d)


def forward(q, k, v, q_doc, q_pos, k_doc, k_pos, softmax_scale):
    """Masked attention forward; see the module docstring for shapes."""
    nq, hq, d = q.shape
    hkv = k.shape[1]
    k_doc = k_doc.contiguous()
    qh, kh, vh = _head_major(q, hkv), _head_major(k, hkv), _head_major(v, hkv)  # kh, vh: [Hkv, 1, Nk, D]
    out = torch.zeros(hkv, hq // hkv, nq, d, dtype=torch.float32, device=q.device)
    lse = torch.full((hkv, hq // hkv, nq), float("-inf"), dtype=torch.float32, device=q.device)
    for qs, qe, ks, ke in _tiles(q_doc, k_doc):
        mask = _visible(q_doc[qs:qe], q_pos[qs:qe], k_doc[ks:ke], k_pos[ks:ke])
        if not bool(mask.any()):
            continue
        scores = (qh[:, :, qs:qe] @ kh[:, :, ks:ke].transpose(-1, -2)) * softmax_scale
        scores = scores.masked_fill(~mask, float("-inf"))
        tile_lse = torch.logsumexp(scores, dim=-1)  # [Hkv, G, nq]
        finite = torch.where(torch.isinf(tile_lse), torch.zeros_like(tile_lse), tile_lse)
        tile_out = torch.exp(scores - finite.unsqueeze(-1)) @ vh[:, :, ks:ke]
        out[:, :, qs:qe], lse[:, :, qs:qe] = merge_partial(
            out[:, :, qs:qe], lse[:, :, qs:qe], tile_out, tile_lse
        )
    return _token_major(out).to(q.dtype), lse.permute(2, 0, 1).reshape(nq, hq)


def backward(dout, q, k, v, out, lse, q_doc, q_pos, k_doc, k_pos, softmax_scale):
    """Masked attention backward against the final (out, lse); see the module docstring."""
    nq, hq, d = q.shape
    hkv = k.shape[1]
    k_doc = k_doc.contiguous()
    qh, kh, vh, doh = (_head_major(t, hkv) for t in (q, k, v, dout))
    dq, dk, dv = torch.zeros_like(qh), torch.zeros_like(kh), torch.zeros_like(vh)
    delta = _head_major((dout.float() * out.float()).sum(-1, keepdim=True), hkv)  # [Hkv, G, Nq, 1]
    row_lse = _head_major(lse.unsqueeze(-1), hkv)
    row_lse = torch.where(torch.isinf(row_lse), torch.zeros_like(row_lse), row_lse)
    for qs, qe, ks, ke in _tiles(q_doc, k_doc):
        mask = _visible(q_doc[qs:qe], q_pos[qs:qe], k_doc[ks:ke], k_pos[ks:ke])
        if not bool(mask.any()):
            continue
        qt, dot, kt, vt = qh[:, :, qs:qe], doh[:, :, qs:qe], kh[:, :, ks:ke], vh[:, :, ks:ke]
        scores = (qt @ kt.transpose(-1, -2)) * softmax_scale
        probs = torch.exp(scores - row_lse[:, :, qs:qe]).masked_fill(~mask, 0.0)
        dscores = probs * (dot @ vt.transpose(-1, -2) - delta[:, :, qs:qe]) * softmax_scale
        dv[:, :, ks:ke] += (probs.transpose(-1, -2) @ dot).sum(1, keepdim=True)
        dk[:, :, ks:ke] += (dscores.transpose(-1, -2) @ qt).sum(1, keepdim=True)
        dq[:, :, qs:qe] += dscores @ kt
    return _token_major(dq).to(q.dtype), _token_major(dk).to(k.dtype), _token_major(dv).to(v.dtype)
