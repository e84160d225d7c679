"""The "flash_attn" backend equals the reference backend (needs CUDA and flash-attn; skipped otherwise)."""
from __future__ import annotations

import pytest
import torch

from longctx.attention import flash_attn_backend, reference
from longctx.attention.backends import BackendUnavailableError, get_backend

from tests.attention.test_sdpa_backend import TOL, _layouts, _rel


def test_flash_attn_unavailable_without_cuda_says_why():
    with pytest.raises(BackendUnavailableError, match="flash_attn.*CUDA"):
        get_backend("flash_attn", torch.device("cpu"))


@pytest.mark.gpu
@pytest.mark.skipif(not flash_attn_backend.is_available(), reason="needs CUDA and flash-attn")
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_flash_attn_matches_reference_forward_lse_and_backward(dtype):
    """flash-attn computes in fp16/bf16: compared with the fp32 reference on the same rounded inputs."""
    tol = 2e-2
    for i, layout in enumerate(_layouts()):
        (q_doc, q_pos), (k_doc, k_pos) = [(d.cuda(), p.cuda()) for d, p in layout]
        gen = torch.Generator().manual_seed(i)
        q = torch.randn(q_doc.numel(), 8, 64, generator=gen).to("cuda", dtype)
        k, v = (torch.randn(k_doc.numel(), 2, 64, generator=gen).to("cuda", dtype) for _ in range(2))
        q32, k32, v32 = q.float(), k.float(), v.float()
        want_out, want_lse = reference.forward(q32, k32, v32, q_doc, q_pos, k_doc, k_pos, 0.125)
        out, lse = flash_attn_backend.forward(q, k, v, q_doc, q_pos, k_doc, k_pos, 0.125)
        seen = torch.isfinite(want_lse)
        assert torch.equal(torch.isfinite(lse), seen)
        assert _rel(out.float(), want_out) < tol and _rel(lse[seen], want_lse[seen]) < TOL * 100
        dout = torch.randn(q.shape, generator=gen).to("cuda", dtype)
        want = reference.backward(dout.float(), q32, k32, v32, want_out, want_lse, q_doc, q_pos, k_doc, k_pos, 0.125)
        got = flash_attn_backend.backward(dout, q, k, v, out, lse, q_doc, q_pos, k_doc, k_pos, 0.125)
        for name, g, w in zip("qkv", got, want):
            assert g.dtype == dtype and _rel(g.float(), w) < tol, f"d{name}: {_rel(g.float(), w):.2e}"
