"""The fused RoPE-from-tables CUDA op against the model's torch rotation (`longctx.model.rope.apply_rope` on CPU)."""
from __future__ import annotations

import pytest
import torch

from longctx.kernels import extension, ops
from longctx.model.rope import apply_rope, rope_tables


def test_rope_tables_refuses_cpu_tensors_with_the_fix():
    cos, sin = rope_tables(torch.arange(4), 8, 10000.0)
    with pytest.raises(RuntimeError, match="use backend='torch'"):
        ops.rope_tables(torch.zeros(4, 2, 8), cos, sin)
    with pytest.raises(ValueError, match=r"cos must be fp32 \[4, 4\]"):
        ops.rope_tables(torch.zeros(4, 2, 8), cos[:3], sin)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_rope_tables_on_cuda_match_the_torch_rotation_at_million_token_positions(dtype):
    assert extension.load("cuda", build=True) is not None, extension.why_unavailable("cuda")
    positions = torch.randint(0, 1_000_000, (257,))
    cos, sin = rope_tables(positions, 64, 500000.0)
    x = torch.randn(257, 3, 64, dtype=dtype)
    grad = torch.randn_like(x)
    x_cpu, x_gpu = x.clone().requires_grad_(), x.cuda().requires_grad_()
    want = apply_rope(x_cpu, cos, sin)
    got = apply_rope(x_gpu, cos.cuda(), sin.cuda())
    tol = dict(atol=1e-5, rtol=1e-5) if dtype == torch.float32 else dict(atol=1e-2, rtol=1e-2)
    torch.testing.assert_close(got.cpu(), want, **tol)
    want.backward(grad)
    got.backward(grad.cuda())
    torch.testing.assert_close(x_gpu.grad.cpu(), x_cpu.grad, **tol)
