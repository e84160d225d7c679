"""The attention kernels compile for an H100 (sm_90) with the launch settings the backend uses.

Triton's interpreter runs the kernels' Python and misses what only the GPU
compiler checks (non-constexpr globals, type unification across branches,
shared memory). ``triton.compile`` with an explicit GPU target runs the whole
pipeline to PTX and cubin (Triton ships ptxas) without a GPU.
"""
from __future__ import annotations

import pytest
import torch

import triton  # a [test] dependency: missing, this fails (never skips)
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from longctx.kernels.triton_attention import kernel_meta

_TRITON_TYPE = {torch.float16: "fp16", torch.bfloat16: "bf16", torch.float32: "fp32"}
_DATA_POINTERS = {"Q", "K", "V", "Out", "dOut", "dQ", "dK", "dV"}
_FP32_POINTERS = {"Lse", "Delta"}
_INDEX_POINTERS = {"QDoc", "QPos", "KDoc", "KPos", "KStart", "KFullEnd", "KEnd", "QStart", "QFullStart", "QEnd"}
_FLOAT_SCALARS = {"qk_scale_log2", "softmax_scale"}
H100_SHARED_MEMORY = 227 * 1024


def _signature(kernel, dtype: torch.dtype, constexprs: dict) -> dict[str, str]:
    signature = {}
    for name in kernel.arg_names:
        if name in constexprs:
            signature[name] = "constexpr"
        elif name in _DATA_POINTERS:
            signature[name] = f"*{_TRITON_TYPE[dtype]}"
        elif name in _FP32_POINTERS:
            signature[name] = "*fp32"
        elif name in _INDEX_POINTERS:
            signature[name] = "*i32"
        else:
            signature[name] = "fp32" if name in _FLOAT_SCALARS else "i32"
    return signature


def compile_for_h100(dtype: torch.dtype, head_dim: int) -> dict[str, int]:
    """Compile the forward and the three backward kernels; return shared memory bytes per kernel."""
    from longctx.kernels import triton_attention_kernels as kernels

    meta, cfg = kernel_meta(torch.device("cuda"), dtype, head_dim, group=2)
    options = dict(num_warps=meta.pop("num_warps"), num_stages=meta.pop("num_stages"))
    blocks = {
        kernels.attention_fwd_kernel: (cfg.fwd_m, cfg.fwd_n),
        kernels.attention_bwd_dkdv_kernel: (cfg.dkdv_m, cfg.dkdv_n),
        kernels.attention_bwd_dq_kernel: (cfg.dq_m, cfg.dq_n),
        kernels.attention_bwd_delta_kernel: (cfg.dq_m, None),
    }
    shared = {}
    for kernel, (block_m, block_n) in blocks.items():
        wanted = dict(meta, BLOCK_M=block_m, BLOCK_N=block_n)
        constexprs = {name: value for name, value in wanted.items() if name in kernel.arg_names}
        source = ASTSource(kernel, _signature(kernel, dtype, constexprs), constexprs=constexprs)
        compiled = triton.compile(source, target=GPUTarget("cuda", 90, 32), options=options)
        assert "ptx" in compiled.asm and compiled.asm["cubin"], kernel.fn.__name__
        shared[kernel.fn.__name__] = compiled.metadata.shared
    return shared


def _assert_fits(shared: dict[str, int]) -> None:
    too_big = {name: size for name, size in shared.items() if size > H100_SHARED_MEMORY}
    assert not too_big, f"kernels need more shared memory than an H100 has ({H100_SHARED_MEMORY} B): {too_big}"


def test_bf16_head_dim_128_kernels_compile_for_h100():
    _assert_fits(compile_for_h100(torch.bfloat16, 128))


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
@pytest.mark.parametrize("head_dim", [64, 128])
def test_all_dtypes_and_head_dims_compile_for_h100(dtype, head_dim):
    _assert_fits(compile_for_h100(dtype, head_dim))
