"""The kernels benchmark's host-side pieces (the GPU timing itself runs only on CUDA machines)."""
from __future__ import annotations

import pytest
import torch

from longctx.benchmarks import kernels_bench


def test_packed_workload_covers_the_tokens_with_long_tailed_documents():
    workload = kernels_bench.make_workload("packed", 65536, median_doc=1024, seed=0)
    assert workload.tokens == 65536 and min(workload.lengths) >= 1
    assert max(workload.lengths) > 4 * sorted(workload.lengths)[len(workload.lengths) // 2]
    assert kernels_bench.make_workload("packed", 65536, 1024, 0) == workload  # seeded


def test_flops_are_causal_and_sum_per_document():
    dense = kernels_bench.Workload("dense", (1000,))
    packed = kernels_bench.Workload("packed", (600, 400))
    assert kernels_bench.attention_flops(dense, 2, 64, "fwd") == 2.0 * 1000**2 * 64 * 2
    assert kernels_bench.attention_flops(packed, 2, 64, "fwd") == 2.0 * (600**2 + 400**2) * 64 * 2
    assert kernels_bench.attention_flops(dense, 2, 64, "bwd") == 2.5 * kernels_bench.attention_flops(dense, 2, 64, "fwd")


def test_bad_arguments_exit_with_a_message(capsys):
    with pytest.raises(SystemExit):
        kernels_bench.parse_args(["--backends", "triton,nope"])
    assert "unknown backend/layout ['nope']" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        kernels_bench.parse_args(["--heads", "6", "--kv-heads", "4"])


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU path")
def test_without_cuda_the_suite_says_so_and_succeeds(capsys):
    assert kernels_bench.main([]) == 0
    assert "needs a CUDA GPU" in capsys.readouterr().out
