"""The csrc ops against their pure-torch fallbacks, and the fallbacks against independent specs.

The C++ host extension is JIT-built once per source version into the extension
cache (about a minute on two cores the first time, then reused); the CUDA
sources are compiled with nvcc (no GPU needed); CUDA ops run only under
``@pytest.mark.gpu``.
"""
from __future__ import annotations

import shutil
import subprocess

import pytest
import torch

from longctx.kernels import extension, ops, torch_fallbacks
from longctx.attention.sharding import ZigzagSharding
from tests.reference.dense_attention import dense_attention

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.fixture(scope="session")
def host_extension():
    if shutil.which("c++") is None and shutil.which("g++") is None:
        pytest.skip("no C++ compiler")
    module = extension.load("host", build=True)
    assert module is not None, extension.why_unavailable("host")
    return module


# ---------------------------------------------------------------- zigzag shard index

ZIGZAG_CASES = [([5, 9], 2), ([1, 2, 3, 40, 7], 2), ([1, 17, 4, 63, 2, 8], 4), ([3], 3), ([100], 1)]


@pytest.mark.parametrize("lengths, world_size", ZIGZAG_CASES)
def test_zigzag_fallback_matches_zigzag_sharding_and_covers_every_token_once(lengths, world_size):
    cu = torch.cumsum(torch.tensor([0] + lengths), 0)
    sharding = ZigzagSharding(cu, world_size)
    seen = []
    for rank in range(world_size):
        shard = ops.zigzag_shard_index(cu, world_size, rank, backend="torch")
        assert torch.equal(shard.token_index, sharding.token_index(rank)), f"rank {rank}"
        assert torch.equal(shard.doc_ids, sharding.doc_ids(rank)), f"rank {rank}"
        assert torch.equal(shard.positions, sharding.positions(rank)), f"rank {rank}"
        assert torch.equal(shard.token_index, cu[shard.doc_ids] + shard.positions)
        assert torch.equal(torch.diff(shard.cu_seqlens), torch.bincount(shard.doc_ids, minlength=len(lengths)))
        seen.append(shard.token_index)
    assert torch.equal(torch.sort(torch.cat(seen)).values, torch.arange(sum(lengths)))


@pytest.mark.parametrize("lengths, world_size", ZIGZAG_CASES)
def test_zigzag_cpp_matches_fallback(host_extension, lengths, world_size):
    cu = torch.cumsum(torch.tensor([0] + lengths), 0)
    for rank in range(world_size):
        compiled = ops.zigzag_shard_index(cu, world_size, rank, backend="compiled")
        fallback = ops.zigzag_shard_index(cu, world_size, rank, backend="torch")
        assert compiled.backend == "cpp" and fallback.backend == "torch"
        for field in ("token_index", "doc_ids", "positions", "cu_seqlens"):
            got, want = getattr(compiled, field), getattr(fallback, field)
            assert got.dtype == want.dtype == torch.int64 and torch.equal(got, want), f"{field} rank {rank}"


def test_zigzag_cpp_on_many_random_documents(host_extension):
    gen = torch.Generator().manual_seed(0)
    lengths = torch.randint(1, 300, (2000,), generator=gen)
    cu = torch.cat([torch.zeros(1, dtype=torch.int64), torch.cumsum(lengths, 0)])
    for world_size, rank in ((8, 3), (16, 15), (5, 0)):
        compiled = ops.zigzag_shard_index(cu, world_size, rank, backend="compiled")
        fallback = ops.zigzag_shard_index(cu, world_size, rank, backend="torch")
        assert torch.equal(compiled.token_index, fallback.token_index)
        assert torch.equal(compiled.positions, fallback.positions)


def test_auto_backend_reports_what_it_uses(host_extension):
    assert ops.resolve_backend("zigzag_shard_index", "cpu") == "cpp"
    assert ops.resolve_backend("zigzag_shard_index", "cpu", "torch") == "torch"
    assert ops.zigzag_shard_index([0, 4], 1, 0).backend == "cpp"
    if not torch.cuda.is_available():
        assert ops.resolve_backend("lse_merge_", "cpu") == "torch"
        with pytest.raises(RuntimeError, match="runs on cuda tensors"):
            ops.resolve_backend("rope", "cpu", "compiled")


@pytest.mark.parametrize(
    "cu, world_size, rank, message",
    [
        ([1, 5], 2, 0, "must start at 0"),
        ([0, 5, 5], 2, 0, r"strictly increasing; cu_seqlens\[1\]=5 >= cu_seqlens\[2\]=5"),
        ([0, 5], 0, 0, "world_size must be a positive int"),
        ([0, 5], 2, 2, r"rank must be an int in \[0, 2\)"),
        ([[0, 5]], 2, 0, "1-D integer"),
    ],
)
def test_zigzag_bad_input_names_the_field(cu, world_size, rank, message):
    with pytest.raises(ValueError, match=message):
        ops.zigzag_shard_index(cu, world_size, rank)


# ---------------------------------------------------------------- lse merge

def _two_block_case(device="cpu", dtype=torch.float32):
    """Attention over keys split into two blocks (block 2 has rows that see nothing)."""
    gen = torch.Generator().manual_seed(0)
    q, k, v = torch.randn(6, 2, 8, generator=gen), torch.randn(10, 2, 8, generator=gen), torch.randn(10, 2, 8, generator=gen)
    q_doc, q_pos = torch.tensor([0, 0, 0, 1, 1, 1]), torch.tensor([2, 5, 9, 0, 1, 2])
    k_doc, k_pos = torch.tensor([0] * 7 + [1] * 3), torch.tensor([0, 1, 2, 3, 4, 5, 6, 0, 1, 2])
    halves = [slice(0, 4), slice(4, 10)]
    parts = [dense_attention(q, k[s], v[s], q_doc, q_pos, k_doc[s], k_pos[s], 0.4) for s in halves]
    full = dense_attention(q, k, v, q_doc, q_pos, k_doc, k_pos, 0.4)
    (out_a, lse_a), (out_b, lse_b) = [(o.float().to(device), l.float().to(device)) for o, l in parts]
    return out_a, lse_a, out_b.to(dtype), lse_b, full


def test_lse_merge_fallback_merges_blocks_into_full_attention():
    out, lse, block_out, block_lse, (full_out, full_lse) = _two_block_case()
    assert torch.isneginf(block_lse).any() and torch.isneginf(lse).any()  # rows that see only one block
    ops.lse_merge_(out, lse, block_out, block_lse, backend="torch")
    torch.testing.assert_close(out.double(), full_out, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(lse.double(), full_lse, atol=1e-6, rtol=1e-6)


def test_lse_merge_keeps_rows_that_see_nothing_empty():
    out, lse = torch.zeros(3, 1, 4), torch.full((3, 1), float("-inf"))
    ops.lse_merge_(out, lse, torch.zeros(3, 1, 4), torch.full((3, 1), float("-inf")), backend="torch")
    assert torch.isneginf(lse).all() and not out.isnan().any() and not out.abs().sum()


def test_lse_merge_bad_input_names_the_field():
    with pytest.raises(ValueError, match="out must be fp32"):
        ops.lse_merge_(torch.zeros(2, 1, 4, dtype=torch.bfloat16), torch.zeros(2, 1), torch.zeros(2, 1, 4), torch.zeros(2, 1))
    with pytest.raises(ValueError, match="block_lse must be fp32 of shape"):
        ops.lse_merge_(torch.zeros(2, 1, 4), torch.zeros(2, 1), torch.zeros(2, 1, 4), torch.zeros(3, 1))


@pytest.mark.gpu
@requires_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_lse_merge_cuda_matches_fallback(dtype):
    out, lse, block_out, block_lse, _ = _two_block_case("cuda", dtype)
    want_out, want_lse = out.clone(), lse.clone()
    ops.lse_merge_(want_out, want_lse, block_out, block_lse, backend="torch")
    assert ops.lse_merge_(out, lse, block_out, block_lse, backend="compiled") == "cuda"
    torch.testing.assert_close(out, want_out, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(lse, want_lse, atol=1e-6, rtol=1e-6)


# ---------------------------------------------------------------- RoPE

def _rope_by_complex_numbers(x, positions, base):
    """Independent spec: rotate each (x_i, x_{i+D/2}) pair by angle pos / base**(2i/D), in float64."""
    half = x.shape[-1] // 2
    freqs = base ** (-torch.arange(half, dtype=torch.float64) * 2 / x.shape[-1])
    angle = positions.double()[:, None, None] * freqs
    pairs = torch.complex(x[..., :half].double(), x[..., half:].double()) * torch.exp(1j * angle)
    return torch.cat([pairs.real, pairs.imag], -1)


def test_rope_fallback_matches_complex_rotation_and_inverts():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(9, 3, 16, generator=gen)
    positions = torch.tensor([0, 1, 2, 3, 0, 1, 0, 1, 2])  # three packed documents
    y = ops.rope(x, positions, base=500.0, backend="torch")
    torch.testing.assert_close(y.double(), _rope_by_complex_numbers(x, positions, 500.0), atol=1e-5, rtol=1e-5)
    inv_freq = torch_fallbacks.rope_inverse_frequencies(16, 500.0)
    torch.testing.assert_close(torch_fallbacks.rope(y, positions, inv_freq, -1.0), x, atol=1e-5, rtol=1e-5)


def test_rope_gradient_is_the_inverse_rotation():
    x = torch.randn(5, 2, 8, dtype=torch.float32, requires_grad=True)
    positions = torch.tensor([0, 3, 7, 1, 2])
    grad = torch.randn(5, 2, 8)
    (got,) = torch.autograd.grad(ops.rope(x, positions, backend="torch"), x, grad)
    x64 = x.detach().double().requires_grad_()
    (want,) = torch.autograd.grad(_rope_by_complex_numbers(x64, positions, 10000.0), x64, grad.double())
    torch.testing.assert_close(got.double(), want, atol=1e-5, rtol=1e-5)


def test_rope_bad_input_names_the_field():
    with pytest.raises(ValueError, match="even head_dim"):
        ops.rope(torch.zeros(2, 1, 5), torch.arange(2))
    with pytest.raises(ValueError, match=r"positions must be an int tensor \[2\]"):
        ops.rope(torch.zeros(2, 1, 4), torch.zeros(2))


@pytest.mark.gpu
@requires_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_rope_cuda_matches_fallback(dtype):
    x = torch.randn(300, 4, 128, device="cuda").to(dtype).requires_grad_()
    positions = torch.cat([torch.arange(100), torch.arange(200) + 5000]).cuda()
    grad = torch.randn_like(x)
    got = ops.rope(x, positions, backend="compiled")
    want = ops.rope(x, positions, backend="torch")
    tol = dict(atol=1e-5, rtol=1e-5) if dtype == torch.float32 else dict(atol=1e-2, rtol=1e-2)
    torch.testing.assert_close(got, want, **tol)
    torch.testing.assert_close(torch.autograd.grad(got, x, grad)[0], torch.autograd.grad(want, x, grad)[0], **tol)


# ---------------------------------------------------------------- nvcc

def test_cuda_sources_compile_with_nvcc(tmp_path):
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        pytest.skip("nvcc not installed")
    source = extension.csrc_dir() / "cuda" / "attention_ops.cu"
    result = subprocess.run(
        [nvcc, "-c", str(source), "-o", str(tmp_path / "attention_ops.o"), "-O3",
         "-gencode", "arch=compute_90,code=sm_90", "-Werror", "all-warnings"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, f"nvcc failed:\n{result.stderr}"
    assert (tmp_path / "attention_ops.o").stat().st_size > 0
