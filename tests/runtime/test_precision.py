"""bf16 mixed precision: 4 gloo ranks train like 1 process within a bf16 bound; master weights stay fp32.

The bound. Under bf16 every matmul output is rounded to 8 significant bits
(unit roundoff u = 2**-8 ~ 3.9e-3). Four ranks compute the same products as one
process but cut into other shards and blocks (ring merges, other micro-batch
splits), so a value may round the other way: single logits differ by up to ~u
relative, with independent signs from token to token. The loss is a mean over
~10^3 targets, so these differences average down to about u / sqrt(10^3) ~
1.2e-4 relative; three AdamW steps (each moves a weight by about lr whatever
the rounding of its gradient) keep that order. The test allows u / 4 ~ 9.8e-4,
eight times that estimate, so that a systematic error (a mismatched shard, a
wrong merge) is not hidden under a bound of u itself. Measured on these
configs over 4 steps: 6.2e-5 for bf16 4 ranks vs 1 process, 5.8e-5 for bf16
vs fp32 in one process, 4.8e-8 for fp32 4 ranks vs 1 process (whose test, tests/runtime/test_distributed_training.py, keeps
1e-5). A bf16 run that silently ran in fp32 would differ from the fp32 run by
less than 1e-5, which the last test rules out.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

from longctx.runtime.config import ConfigError
from longctx.runtime.precision import compute_autocast, resolve_precision
from longctx.runtime.trainer import train
from tests.runtime.conftest import tiny_run

pytestmark = pytest.mark.timeout(600)

BF16_UNIT_ROUNDOFF = 2.0 ** -8
STEPS = 3


def train_and_report(run) -> dict:
    """Train `run` on this rank; losses and the dtypes of parameters, gradients and optimizer states."""
    result = train(run)
    model = result.model
    return {"losses": result.losses,
            "param_dtypes": {str(p.dtype) for p in model.parameters()},
            "grad_dtypes": {str(p.grad.dtype) for p in model.parameters() if p.grad is not None}}


@pytest.fixture(scope="module")
def runs(gloo_pool, tiny_dataset, tmp_path_factory) -> dict:
    one = ("parallel.nprocs=1", "parallel.max_tokens_per_rank=null", f"train.steps={STEPS}")
    four = ("parallel=dynamic", "parallel.planner=greedy", f"train.steps={STEPS}")
    return {
        "one_fp32": gloo_pool(1).run(train_and_report, tiny_run(tiny_dataset, tmp_path_factory.mktemp("f1"),
                                                                *one, "train.precision=fp32"))[0],
        "one_bf16": gloo_pool(1).run(train_and_report, tiny_run(tiny_dataset, tmp_path_factory.mktemp("b1"),
                                                                *one, "train.precision=bf16"))[0],
        "four_bf16": gloo_pool(4).run(train_and_report, tiny_run(tiny_dataset, tmp_path_factory.mktemp("b4"),
                                                                 *four, "train.precision=bf16")),
    }


def test_bf16_on_4_ranks_matches_1_process_within_the_bf16_bound(runs):
    want = runs["one_bf16"]["losses"]
    for rank, got in enumerate(runs["four_bf16"]):
        for step in range(1, STEPS + 1):
            gap = abs(got["losses"][step] - want[step]) / abs(want[step])
            assert gap <= BF16_UNIT_ROUNDOFF / 4, (f"rank {rank} step {step}: bf16 loss {got['losses'][step]!r} on "
                                                   f"4 ranks vs {want[step]!r} in 1 process (relative {gap:.2e})")


def test_bf16_keeps_fp32_master_weights_and_gradients(runs):
    for result in [runs["one_bf16"], *runs["four_bf16"]]:
        assert result["param_dtypes"] == {"torch.float32"}
        assert result["grad_dtypes"] <= {"torch.float32"}


def test_bf16_really_computes_in_bf16(runs):
    fp32, bf16 = runs["one_fp32"]["losses"], runs["one_bf16"]["losses"]
    gaps = [abs(bf16[s] - fp32[s]) / abs(fp32[s]) for s in range(1, STEPS + 1)]
    assert max(gaps) > 1e-5, f"bf16 losses equal the fp32 ones ({gaps}); autocast did not take effect"
    assert max(gaps) <= BF16_UNIT_ROUNDOFF / 4, f"bf16 vs fp32 relative loss gaps {gaps}"


def test_autocast_runs_linears_in_bf16_on_cpu():
    layer = nn.Linear(4, 3)
    with compute_autocast("bf16", torch.device("cpu")):
        assert layer(torch.randn(2, 4)).dtype == torch.bfloat16
    with compute_autocast("fp32", torch.device("cpu")):
        assert layer(torch.randn(2, 4)).dtype == torch.float32


def test_auto_is_bf16_on_cuda_and_fp32_on_cpu():
    assert resolve_precision("auto", torch.device("cuda", 0)) == "bf16"
    assert resolve_precision("auto", torch.device("cpu")) == "fp32"
    assert resolve_precision("bf16", torch.device("cpu")) == "bf16"


def test_unknown_precision_is_a_config_error_naming_the_field(tiny_dataset, tmp_path):
    with pytest.raises(ConfigError, match=r"train.precision='fp16'"):
        tiny_run(tiny_dataset, tmp_path, "train.precision=fp16")


def test_config_names_every_registered_attention_backend():
    from longctx.attention.backends import backend_names
    from longctx.runtime.config import ATTENTION_BACKENDS

    assert ATTENTION_BACKENDS == backend_names()


def test_unknown_attention_backend_is_a_config_error(tiny_dataset, tmp_path):
    with pytest.raises(ConfigError, match=r"parallel.attention_backend='flash'"):
        tiny_run(tiny_dataset, tmp_path, "parallel.attention_backend=flash")
