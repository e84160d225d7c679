"""The Triton attention backend against a dense float64 masked softmax.

On CPU the kernels run under Triton's interpreter (see conftest.py), so shapes
are tiny; the kernels use 16-row tiles there, so each case still spans several
query and key tiles. Tolerances: fp32 atol=rtol=2e-5 (IEEE dots); bf16/fp16
atol=rtol=3e-2 for out/lse and 6e-2 for gradients (half-precision inputs and P).
"""
from __future__ import annotations

import pytest
import torch

from longctx.kernels import triton_attention
from longctx.kernels.tile_ranges import key_ranges_per_query_tile, query_ranges_per_key_tile
from longctx.attention.sharding import ZigzagSharding
from tests.reference.dense_attention import dense_attention, packed_docs

FP32_TOL = dict(atol=2e-5, rtol=2e-5)
HALF_TOL = {"out": dict(atol=3e-2, rtol=3e-2), "grad": dict(atol=6e-2, rtol=6e-2)}


def _qkv(n_q, n_k, hq, hkv, d, dtype, device, seed=0):
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(n_q, hq, d, generator=gen)
    k = torch.randn(n_k, hkv, d, generator=gen)
    v = torch.randn(n_k, hkv, d, generator=gen)
    return [t.to(dtype=dtype, device=device) for t in (q, k, v)]


def _check_against_dense(q, k, v, q_doc, q_pos, k_doc, k_pos, scale=0.3, tol=None, seed=1):
    """Run forward + backward on the kernels and on the dense reference; compare all five outputs."""
    device = q.device
    idx = [t.to(device) for t in (q_doc, q_pos, k_doc, k_pos)]
    out, lse = triton_attention.forward(q, k, v, *idx, scale)
    assert out.dtype == q.dtype and lse.dtype == torch.float32
    assert out.shape == q.shape and lse.shape == q.shape[:2]

    leaves = [t.detach().cpu().double().requires_grad_() for t in (q, k, v)]
    ref_out, ref_lse = dense_attention(*leaves, q_doc, q_pos, k_doc, k_pos, scale)
    dout = torch.randn(q.shape, generator=torch.Generator().manual_seed(seed)).to(q.dtype)
    ref_grads = torch.autograd.grad(ref_out, leaves, dout.double()) if ref_out.numel() else [x * 0 for x in leaves]
    dq, dk, dv = triton_attention.backward(dout.to(device), q, k, v, out, lse, *idx, scale)
    assert (dq.dtype, dk.dtype, dv.dtype) == (q.dtype, k.dtype, v.dtype)

    out_tol = FP32_TOL if q.dtype == torch.float32 else HALF_TOL["out"]
    grad_tol = FP32_TOL if q.dtype == torch.float32 else HALF_TOL["grad"]
    torch.testing.assert_close(out.cpu().double(), ref_out.detach(), **(tol or out_tol), msg=lambda m: f"out: {m}")
    torch.testing.assert_close(lse.cpu().double(), ref_lse.detach(), **(tol or out_tol), msg=lambda m: f"lse: {m}")
    for name, got, want in zip(("dq", "dk", "dv"), (dq, dk, dv), ref_grads):
        torch.testing.assert_close(got.cpu().double(), want, **(tol or grad_tol), msg=lambda m, n=name: f"{n}: {m}")
    return out, lse, (dq, dk, dv)


def _case_packed_documents_with_gqa_match_dense(device):
    doc, pos = packed_docs([5, 30, 1, 17, 2])
    q, k, v = _qkv(len(doc), len(doc), 4, 2, 32, torch.float32, device)
    _check_against_dense(q, k, v, doc, pos, doc, pos)

def test_packed_documents_with_gqa_match_dense(run_triton_case):
    run_triton_case(_case_packed_documents_with_gqa_match_dense)


def _case_long_documents_take_the_unmasked_path(device):
    """Documents longer than several tiles: whole key tiles run through the unmasked loops."""
    doc, pos = packed_docs([70, 45])
    block = triton_attention.tile_config(torch.device(device), torch.float32, 16).fwd_n
    start, full_end, _ = key_ranges_per_query_tile(doc, pos, doc, pos, block)
    assert int((full_end - start).max()) >= 2 * block, "the case must contain whole fully-visible tiles"
    q, k, v = _qkv(len(doc), len(doc), 2, 1, 16, torch.float32, device)
    _check_against_dense(q, k, v, doc, pos, doc, pos)


def test_long_documents_take_the_unmasked_path(run_triton_case):
    run_triton_case(_case_long_documents_take_the_unmasked_path)


def _case_zigzag_ring_step_blocks_match_dense(device):
    """Chunk-vs-chunk blocks of a 2-rank zigzag ring: queries of one rank, keys of the other."""
    lengths = [37, 6, 21]
    doc, pos = packed_docs(lengths)
    for q_rank, k_rank in ((0, 1), (1, 0)):
        sharding = ZigzagSharding(torch.cumsum(torch.tensor([0] + lengths), 0), 2)
        q_rows, k_rows = sharding.token_index(q_rank), sharding.token_index(k_rank)
        q, k, v = _qkv(len(q_rows), len(k_rows), 2, 1, 16, torch.float32, device, seed=q_rank)
        _check_against_dense(q, k, v, doc[q_rows], pos[q_rows], doc[k_rows], pos[k_rows])

def test_zigzag_ring_step_blocks_match_dense(run_triton_case):
    run_triton_case(_case_zigzag_ring_step_blocks_match_dense)


def _case_block_the_mask_empties_is_never_read(device):
    """Keys no query sees hold NaN: they must not reach out, lse or any gradient."""
    lengths = [20, 40]
    doc, pos = packed_docs(lengths)
    q_rows = ((doc == 0) & (pos < 16)).nonzero().flatten()       # early half of doc 0
    k_rows = ((doc == 1) | (pos >= 16)).nonzero().flatten()      # later keys of doc 0, all of doc 1
    q, k, v = _qkv(len(q_rows), len(k_rows), 2, 2, 16, torch.float32, device)
    k[:], v[:] = float("nan"), float("nan")
    out, lse = triton_attention.forward(q, k, v, doc[q_rows], pos[q_rows], doc[k_rows], pos[k_rows], 0.25)
    assert torch.equal(out.cpu(), torch.zeros_like(out.cpu()))
    assert torch.isneginf(lse).all()
    grads = triton_attention.backward(torch.ones_like(q), q, k, v, out, lse,
                                      doc[q_rows], pos[q_rows], doc[k_rows], pos[k_rows], 0.25)
    for name, grad in zip(("dq", "dk", "dv"), grads):
        assert torch.equal(grad.cpu(), torch.zeros_like(grad.cpu())), f"{name} touched an empty block"

def test_block_the_mask_empties_is_never_read(run_triton_case):
    run_triton_case(_case_block_the_mask_empties_is_never_read)


def _case_documents_outside_the_query_range_are_skipped(device):
    """Only doc 1 is queried; docs 0 and 2 in the key buffer are NaN and must be ignored."""
    doc, pos = packed_docs([18, 25, 19])
    q_rows = (doc == 1).nonzero().flatten()
    q, k, v = _qkv(len(q_rows), len(doc), 2, 1, 16, torch.float32, device)
    poison = (doc != 1).to(device)
    k[poison], v[poison] = float("nan"), float("nan")
    out, lse = triton_attention.forward(q, k, v, doc[q_rows], pos[q_rows], doc, pos, 0.25)
    keep = (doc == 1).nonzero().flatten()
    ref_out, ref_lse = dense_attention(q.cpu(), k.cpu()[keep], v.cpu()[keep], doc[q_rows], pos[q_rows],
                                       doc[keep], pos[keep], 0.25)
    torch.testing.assert_close(out.cpu().double(), ref_out, **FP32_TOL)
    torch.testing.assert_close(lse.cpu().double(), ref_lse, **FP32_TOL)

def test_documents_outside_the_query_range_are_skipped(run_triton_case):
    run_triton_case(_case_documents_outside_the_query_range_are_skipped)


def _case_rows_without_keys_give_zero_and_minus_inf(device):
    """Query docs 0 and 2 have no keys in the block; doc 1 rows see keys at earlier positions."""
    q_doc, q_pos = torch.tensor([0] * 7 + [1] * 9 + [2] * 5), torch.cat([torch.arange(7), torch.arange(9) + 4, torch.arange(5)])
    k_doc, k_pos = torch.tensor([1] * 12), torch.arange(12)
    q, k, v = _qkv(len(q_doc), len(k_doc), 2, 2, 16, torch.float32, device)
    out, lse, _ = _check_against_dense(q, k, v, q_doc, q_pos, k_doc, k_pos)
    assert torch.isneginf(lse[q_doc != 1]).all() and torch.equal(out[q_doc != 1].cpu(), torch.zeros(12, 2, 16))

def test_rows_without_keys_give_zero_and_minus_inf(run_triton_case):
    run_triton_case(_case_rows_without_keys_give_zero_and_minus_inf)


def _case_empty_buffers(device, n_q, n_k):
    q, k, v = _qkv(n_q, n_k, 2, 1, 16, torch.float32, device)
    idx = [torch.zeros(n_q, dtype=torch.int64), torch.arange(n_q), torch.zeros(n_k, dtype=torch.int64), torch.arange(n_k)]
    idx = [t.to(device) for t in idx]
    out, lse = triton_attention.forward(q, k, v, *idx, 0.5)
    assert out.shape == (n_q, 2, 16) and torch.isneginf(lse).all() and not out.abs().sum()
    dq, dk, dv = triton_attention.backward(torch.ones_like(q), q, k, v, out, lse, *idx, 0.5)
    assert dq.shape == q.shape and dk.shape == k.shape and not (dq.abs().sum() + dk.abs().sum() + dv.abs().sum())


@pytest.mark.parametrize("n_q, n_k", [(0, 9), (9, 0), (0, 0)])
def test_empty_buffers(run_triton_case, n_q, n_k):
    run_triton_case(_case_empty_buffers, n_q, n_k)


def _case_half_precision_inputs(device, dtype):
    doc, pos = packed_docs([11, 50])
    q, k, v = _qkv(len(doc), len(doc), 2, 1, 32, dtype, device)
    _check_against_dense(q, k, v, doc, pos, doc, pos)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_inputs(run_triton_case, dtype):
    run_triton_case(_case_half_precision_inputs, dtype)


def _case_head_dims(device, head_dim):
    doc, pos = packed_docs([13, 20])
    q, k, v = _qkv(len(doc), len(doc), 1, 1, head_dim, torch.float32, device)
    _check_against_dense(q, k, v, doc, pos, doc, pos, scale=head_dim ** -0.5)


@pytest.mark.parametrize("head_dim", [64, 128, 24])
def test_head_dims(run_triton_case, head_dim):
    run_triton_case(_case_head_dims, head_dim)


def _case_strided_inputs_and_int32_indices(device):
    """q/k/v as views into a fused qkv buffer (token stride 3*H*D), doc/pos as int32."""
    doc, pos = packed_docs([9, 24])
    fused = torch.randn(len(doc), 3, 2, 16, generator=torch.Generator().manual_seed(3)).to(device)
    q, k, v = fused[:, 0], fused[:, 1], fused[:, 2]
    assert not q.is_contiguous()
    _check_against_dense(q, k, v, doc.int(), pos.int(), doc.int(), pos.int())

def test_strided_inputs_and_int32_indices(run_triton_case):
    run_triton_case(_case_strided_inputs_and_int32_indices)


def _case_matches_the_attention_reference_backend(device):
    """Same block through longctx.attention.reference (the registry's exact backend), fwd and bwd."""
    from longctx.attention import reference

    lengths = [29, 3, 40]
    sharding = ZigzagSharding(torch.cumsum(torch.tensor([0] + lengths), 0), 2)
    doc, pos = packed_docs(lengths)
    q_rows, k_rows = sharding.token_index(1), sharding.token_index(0)
    idx = [t.to(device) for t in (doc[q_rows], pos[q_rows], doc[k_rows], pos[k_rows])]
    q, k, v = _qkv(len(q_rows), len(k_rows), 4, 2, 32, torch.float32, device)
    dout = torch.randn(q.shape, generator=torch.Generator().manual_seed(5)).to(device)
    got_out, got_lse = triton_attention.forward(q, k, v, *idx, 0.2)
    want_out, want_lse = reference.forward(q, k, v, *idx, 0.2)
    torch.testing.assert_close(got_out, want_out, **FP32_TOL)
    torch.testing.assert_close(got_lse, want_lse, **FP32_TOL)
    got = triton_attention.backward(dout, q, k, v, want_out, want_lse, *idx, 0.2)
    want = reference.backward(dout, q, k, v, want_out, want_lse, *idx, 0.2)
    for name, g, w in zip(("dq", "dk", "dv"), got, want):
        torch.testing.assert_close(g, w, **FP32_TOL, msg=lambda m, n=name: f"{n}: {m}")


def test_matches_the_attention_reference_backend(run_triton_case):
    run_triton_case(_case_matches_the_attention_reference_backend)


def test_tile_ranges_cover_the_visible_pairs_and_their_full_parts_are_fully_visible():
    """Every visible (query, key) pair lies inside its tile's range (tight at the ends), and every
    pair in a range's full part is visible; full parts are non-empty where one document allows."""
    lengths = [7, 33, 2, 19]
    doc, pos = packed_docs(lengths)
    sharding = ZigzagSharding(torch.cumsum(torch.tensor([0] + lengths), 0), 2)
    for q_rows, k_rows in ((sharding.token_index(1), sharding.token_index(0)), (torch.arange(61), torch.arange(61))):
        q_doc, q_pos, k_doc, k_pos = doc[q_rows], pos[q_rows], doc[k_rows], pos[k_rows]
        visible = (q_doc[:, None] == k_doc[None, :]) & (k_pos[None, :] <= q_pos[:, None])
        any_full = False
        for block in (4, 16):
            start, full_end, end = key_ranges_per_query_tile(q_doc, q_pos, k_doc, k_pos, block)
            for t in range(len(start)):
                tile = visible[t * block:(t + 1) * block]
                cols = tile.any(0).nonzero().flatten()
                if len(cols):
                    assert (int(start[t]), int(end[t])) == (int(cols.min()), int(cols.max()) + 1), f"query tile {t}"
                assert tile[:, start[t]:full_end[t]].all(), f"query tile {t}: full part not fully visible"
                any_full |= bool(full_end[t] > start[t])
            start, full_start, end = query_ranges_per_key_tile(q_doc, q_pos, k_doc, k_pos, block)
            for t in range(len(start)):
                tile = visible[:, t * block:(t + 1) * block]
                rows = tile.any(1).nonzero().flatten()
                assert ((rows >= start[t]) & (rows < end[t])).all(), f"key tile {t}"
                assert tile[full_start[t]:end[t]].all(), f"key tile {t}: full part not fully visible"
                any_full |= bool(end[t] > full_start[t])
        assert any_full


def test_bad_inputs_raise_clear_errors():
    q, k, v = _qkv(4, 4, 3, 2, 16, torch.float32, "cpu")
    idx = [torch.zeros(4, dtype=torch.int64), torch.arange(4)] * 2
    with pytest.raises(ValueError, match="query heads 3 not a multiple of kv heads 2"):
        triton_attention.forward(q, k, v, *idx, 0.5)
    q, k, v = _qkv(4, 4, 2, 2, 16, torch.float32, "cpu")
    with pytest.raises(ValueError, match="q_pos must have shape"):
        triton_attention.forward(q, k, v, idx[0], idx[1][:3], idx[2], idx[3], 0.5)
    with pytest.raises(ValueError, match="dtype torch.float64 unsupported"):
        triton_attention.forward(q.double(), k.double(), v.double(), *idx, 0.5)
    with pytest.raises(ValueError, match="softmax_scale"):
        triton_attention.forward(q, k, v, *idx, float("nan"))
    with pytest.raises(ValueError, match="k_doc dtype torch.float32"):
        triton_attention.forward(q, k, v, idx[0], idx[1], idx[2].float(), idx[3], 0.5)


def test_is_available_reflects_triton_and_device(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert triton_attention.is_available()
    monkeypatch.delenv("TRITON_INTERPRET")
    assert triton_attention.is_available() == torch.cuda.is_available()
    if not torch.cuda.is_available():
        assert "no CUDA device" in triton_attention.why_unavailable()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_cuda_packed_documents_at_realistic_size_match_reference(dtype):
    """3K tokens of packed documents, head_dim 128, GQA 8/2, on compiled kernels vs the reference backend."""
    from longctx.attention import reference

    doc, pos = packed_docs([1500, 7, 900, 300, 400])
    q, k, v = _qkv(len(doc), len(doc), 8, 2, 128, dtype, "cuda")
    doc, pos = doc.cuda(), pos.cuda()
    dout = torch.randn_like(q)
    got_out, got_lse = triton_attention.forward(q, k, v, doc, pos, doc, pos, 128 ** -0.5)
    want_out, want_lse = reference.forward(q, k, v, doc, pos, doc, pos, 128 ** -0.5)
    tol = FP32_TOL if dtype == torch.float32 else HALF_TOL["out"]
    torch.testing.assert_close(got_out.float(), want_out.float(), **tol)
    torch.testing.assert_close(got_lse, want_lse, **tol)
    got = triton_attention.backward(dout, q, k, v, want_out, want_lse, doc, pos, doc, pos, 128 ** -0.5)
    want = reference.backward(dout, q, k, v, want_out, want_lse, doc, pos, doc, pos, 128 ** -0.5)
    grad_tol = FP32_TOL if dtype == torch.float32 else HALF_TOL["grad"]
    for name, g, w in zip(("dq", "dk", "dv"), got, want):
        torch.testing.assert_close(g.float(), w.float(), **grad_tol, msg=lambda m, n=name: f"{n}: {m}")
