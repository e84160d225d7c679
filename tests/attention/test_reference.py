"""The pure-torch backend equals a naive dense masked softmax, forward and backward (fp32)."""
from __future__ import annotations

import pytest
import torch

from longctx.attention import context_parallel_attention, reference
from longctx.attention.backends import get_backend

TOL = 1e-5


def dense_masked_attention(q, k, v, q_doc, q_pos, k_doc, k_pos, scale):
    """Materialise the full mask and repeated K/V; autograd does the backward."""
    group = q.shape[1] // k.shape[1]
    kk, vv = k.repeat_interleave(group, 1), v.repeat_interleave(group, 1)
    scores = torch.einsum("qhd,khd->hqk", q, kk) * scale
    mask = (q_doc[:, None] == k_doc[None, :]) & (k_pos[None, :] <= q_pos[:, None])
    scores = scores.masked_fill(~mask, float("-inf"))
    lse = torch.logsumexp(scores, -1)
    probs = torch.nan_to_num(torch.exp(scores - lse[..., None]))
    return torch.einsum("hqk,khd->qhd", probs, vv), lse.T


def _meta(lengths):
    doc = torch.cat([torch.full((n,), i) for i, n in enumerate(lengths)])
    pos = torch.cat([torch.arange(n) for n in lengths])
    return doc, pos


def _rel(a, b):
    a, b = a.detach(), b.detach()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30)) if b.numel() else 0.0


@pytest.mark.parametrize("hq,hkv", [(4, 4), (8, 2), (3, 1)])
@pytest.mark.parametrize("tiles", [(256, 1024), (5, 7)])
def test_reference_matches_dense_masked_softmax_forward_and_backward(monkeypatch, hq, hkv, tiles):
    monkeypatch.setattr(reference, "QUERY_TILE", tiles[0])
    monkeypatch.setattr(reference, "KEY_TILE", tiles[1])
    gen = torch.Generator().manual_seed(hq)
    q_doc, q_pos = _meta([1, 7, 30, 3])
    # keys: a different subset of the same documents (as a ring block): doc 1 and the tail of doc 2
    k_doc, k_pos = torch.cat([q_doc[1:8], q_doc[20:38]]), torch.cat([q_pos[1:8], q_pos[20:38]])
    q = torch.randn(q_doc.numel(), hq, 8, generator=gen, requires_grad=True)
    k = torch.randn(k_doc.numel(), hkv, 8, generator=gen, requires_grad=True)
    v = torch.randn(k_doc.numel(), hkv, 8, generator=gen, requires_grad=True)
    want_out, want_lse = dense_masked_attention(q, k, v, q_doc, q_pos, k_doc, k_pos, 0.3)
    out, lse = reference.forward(q, k, v, q_doc, q_pos, k_doc, k_pos, 0.3)
    seen = torch.isfinite(want_lse)
    assert torch.equal(torch.isfinite(lse), seen), "rows without a visible key must have lse -inf"
    assert _rel(out, want_out) < TOL and _rel(lse[seen], want_lse[seen]) < TOL
    assert torch.all(out[~seen.any(1)] == 0), "rows without a visible key must give out 0"
    dout = torch.randn(out.shape, generator=gen)
    want = torch.autograd.grad(want_out, (q, k, v), dout)
    got = reference.backward(dout, q, k, v, out, lse, q_doc, q_pos, k_doc, k_pos, 0.3)
    for name, g, w in zip("qkv", got, want):
        assert _rel(g, w) < TOL, f"d{name}: relative error {_rel(g, w):.2e}"


def test_reference_handles_empty_queries_and_keys():
    doc, pos = _meta([4])
    x = torch.randn(4, 2, 8)
    empty, none = torch.zeros(0, 2, 8), torch.zeros(0, dtype=torch.int64)
    out, lse = reference.forward(x, empty, empty, doc, pos, none, none, 1.0)
    assert out.shape == (4, 2, 8) and torch.all(out == 0) and torch.all(lse == float("-inf"))
    out, lse = reference.forward(empty, x, x, none, none, doc, pos, 1.0)
    assert out.shape == (0, 2, 8) and lse.shape == (0, 2)
    dq, dk, dv = reference.backward(x, x, empty, empty, out.new_zeros(4, 2, 8), lse.new_full((4, 2), -1e30),
                                    doc, pos, none, none, 1.0)
    assert dq.shape == (4, 2, 8) and dk.shape == (0, 2, 8) and torch.all(dq == 0)


def test_local_entry_point_keeps_dtype_and_reaches_every_input():
    q = torch.randn(10, 4, 8, dtype=torch.bfloat16, requires_grad=True)
    kv = [torch.randn(10, 2, 8, dtype=torch.bfloat16, requires_grad=True) for _ in range(2)]
    out = context_parallel_attention(q, *kv, [0, 3, 10])
    assert out.dtype == torch.bfloat16 and out.shape == q.shape
    out.float().sum().backward()
    assert all(t.grad is not None and t.grad.dtype == torch.bfloat16 for t in (q, *kv))


def test_auto_backend_is_reference_on_cpu():
    assert get_backend("auto", torch.device("cpu")).name == "reference"
