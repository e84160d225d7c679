"""The "sdpa" backend (torch's flash SDPA ops) equals the reference backend, and its block decomposition is exact.

CPU runs torch's CPU flash op for real; CUDA cases are marked gpu. fp32,
relative error ``max |got - want| / max |want|`` under `TOL`.
"""
from __future__ import annotations

import pytest
import torch

from longctx.attention import ZigzagSharding, reference, sdpa_backend
from tests.reference.cp_attention_check import FP32_REL_TOL, AttentionCase, dense_results, relative_errors, run_cases
from longctx.attention.segments import attention_blocks, pad_head_dim, require_half_precision

TOL = FP32_REL_TOL


def _meta(lengths):
    doc = torch.cat([torch.full((n,), i) for i, n in enumerate(lengths)])
    pos = torch.cat([torch.arange(n) for n in lengths])
    return doc, pos


def _subset(doc, pos, gen, keep=0.6):
    """A random (doc, pos)-sorted subset of a buffer: segments with arbitrary overlaps."""
    picked = torch.rand(doc.numel(), generator=gen) < keep
    return doc[picked], pos[picked]


def _rel(a, b):
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30)) if b.numel() else 0.0


def _zigzag_pairs():
    """(q meta, k meta) of every ring block of a zigzag sharding over 3 ranks."""
    sharding = ZigzagSharding([0, 1, 8, 308, 341], 3)
    meta = [(sharding.doc_ids(r), sharding.positions(r)) for r in range(3)]
    return [(meta[a], meta[b]) for a in range(3) for b in range(3)]


def _layouts():
    gen = torch.Generator().manual_seed(0)
    doc, pos = _meta([1, 7, 30, 3])
    empty = (doc[:0], pos[:0])
    return [
        ((doc, pos), (doc, pos)),                                    # aligned: one causal block per doc
        ((doc, pos), (torch.cat([doc[1:8], doc[20:38]]), torch.cat([pos[1:8], pos[20:38]]))),
        (_subset(doc, pos, gen), _subset(doc, pos, gen)),            # general overlaps
        (_subset(doc, pos, gen, 0.3), _subset(doc, pos, gen, 0.8)),
        ((doc[30:], pos[30:]), (doc[:25], pos[:25])),                # some rows see nothing
        ((doc, pos), empty), (empty, (doc, pos)), (empty, empty),
        *_zigzag_pairs(),
    ]


@pytest.mark.parametrize("layout", range(len(_layouts())))
def test_blocks_cover_exactly_the_mask(layout):
    (q_doc, q_pos), (k_doc, k_pos) = _layouts()[layout]
    want = (q_doc[:, None] == k_doc[None, :]) & (k_pos[None, :] <= q_pos[:, None])
    covered = torch.zeros(want.shape, dtype=torch.int64)
    for b in attention_blocks(q_doc, q_pos, k_doc, k_pos):
        n = b.q_end - b.q_start
        assert not b.causal or n == b.k_end - b.k_start, f"causal block {b} is not square"
        block = torch.ones(n, b.k_end - b.k_start, dtype=torch.int64)
        covered[b.q_start:b.q_end, b.k_start:b.k_end] += block.tril() if b.causal else block
    assert torch.equal(covered, want.long()), "every visible pair must be in exactly one block, nothing else"


def _check_matches_reference(device, hq, hkv, layout, seed):
    (q_doc, q_pos), (k_doc, k_pos) = [(d.to(device), p.to(device)) for d, p in layout]
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(q_doc.numel(), hq, 16, generator=gen).to(device)
    k, v = (torch.randn(k_doc.numel(), hkv, 16, generator=gen).to(device) for _ in range(2))
    want_out, want_lse = reference.forward(q, k, v, q_doc, q_pos, k_doc, k_pos, 0.3)
    out, lse = sdpa_backend.forward(q, k, v, q_doc, q_pos, k_doc, k_pos, 0.3)
    assert out.dtype == q.dtype and lse.dtype == torch.float32 and lse.shape == want_lse.shape
    seen = torch.isfinite(want_lse)
    assert torch.equal(torch.isfinite(lse), seen), "rows without a visible key must have lse -inf"
    assert torch.all(out[~seen.all(1)] == 0), "rows without a visible key must give out 0"
    assert _rel(out, want_out) < TOL and _rel(lse[seen], want_lse[seen]) < TOL
    dout = torch.randn(q.shape, generator=gen).to(device)
    want = reference.backward(dout, q, k, v, want_out, want_lse, q_doc, q_pos, k_doc, k_pos, 0.3)
    got = sdpa_backend.backward(dout, q, k, v, want_out, want_lse, q_doc, q_pos, k_doc, k_pos, 0.3)
    for name, g, w in zip("qkv", got, want):
        assert g.shape == w.shape and g.dtype == w.dtype
        assert _rel(g, w) < TOL, f"d{name}: relative error {_rel(g, w):.2e}"


@pytest.mark.parametrize("hq,hkv", [(4, 4), (8, 2), (3, 1)])
def test_sdpa_cpu_matches_reference_forward_lse_and_backward(hq, hkv):
    for i, layout in enumerate(_layouts()):
        _check_matches_reference(torch.device("cpu"), hq, hkv, layout, seed=i)


def test_cuda_flash_kernels_refuse_fp32_with_the_fix_and_pad_head_dim_with_zeros():
    with pytest.raises(ValueError, match="torch.float32.*cast q/k/v to bfloat16"):
        require_half_precision("sdpa", torch.zeros(2, 1, 8))
    padded = pad_head_dim(torch.ones(3, 2, 12))
    assert padded.shape == (3, 2, 16) and torch.all(padded[..., 12:] == 0) and torch.all(padded[..., :12] == 1)
    assert pad_head_dim(torch.ones(3, 2, 16)).shape == (3, 2, 16)


def check_half_precision_matches_reference(backend, dtype, head_dim=12, tol=2e-2):
    """A CUDA flash backend (fp16/bf16 only) vs the fp32 reference on the same rounded inputs, every layout.

    head_dim 12 exercises the padding to a multiple of 8; lse must agree within 1e-3 relative.
    """
    for i, layout in enumerate(_layouts()):
        (q_doc, q_pos), (k_doc, k_pos) = [(d.cuda(), p.cuda()) for d, p in layout]
        gen = torch.Generator().manual_seed(i)
        q = torch.randn(q_doc.numel(), 8, head_dim, generator=gen).to("cuda", dtype)
        k, v = (torch.randn(k_doc.numel(), 2, head_dim, generator=gen).to("cuda", dtype) for _ in range(2))
        want_out, want_lse = reference.forward(q.float(), k.float(), v.float(), q_doc, q_pos, k_doc, k_pos, 0.3)
        out, lse = backend.forward(q, k, v, q_doc, q_pos, k_doc, k_pos, 0.3)
        seen = torch.isfinite(want_lse)
        assert torch.equal(torch.isfinite(lse), seen) and out.dtype == dtype
        assert _rel(out.float(), want_out) < tol and _rel(lse[seen], want_lse[seen]) < 1e-3
        dout = torch.randn(q.shape, generator=gen).to("cuda", dtype)
        want = reference.backward(dout.float(), q.float(), k.float(), v.float(), want_out, want_lse,
                                  q_doc, q_pos, k_doc, k_pos, 0.3)
        got = backend.backward(dout, q, k, v, out, lse, q_doc, q_pos, k_doc, k_pos, 0.3)
        for name, g, w in zip("qkv", got, want):
            assert g.dtype == dtype and _rel(g.float(), w) < tol, f"d{name}: {_rel(g.float(), w):.2e}"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_sdpa_cuda_matches_reference_forward_lse_and_backward(dtype):
    check_half_precision_matches_reference(sdpa_backend, dtype)


def test_sdpa_ring_and_hybrid_on_gloo_match_single_process_reference(gloo_pool):
    cases = [AttentionCase(lengths=(1, 7, 300, 33), kind="ring", backend="sdpa"),
             AttentionCase(lengths=(2, 41), num_q_heads=6, num_kv_heads=1, kind="hybrid", seed=1, backend="sdpa")]
    per_rank = gloo_pool(3).run(run_cases, cases)
    for i, case in enumerate(cases):
        errors = relative_errors(case, [r[i] for r in per_rank], dense_results(case))
        assert all(e <= TOL for e in errors.values()), f"{case}: {errors}"
