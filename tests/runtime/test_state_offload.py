"""Model states off the device: gradient streaming and parameter offload change nothing but where bytes live.

Against the same steps with both off (the same sharding without offload, and the replicated AdamW), on
1 process and on 4 gloo ranks running dynamic plans (groups that change every wave, ranks running 0 to 4
micro-batches a step, a rank idle for a whole step): every step's summed fp32 gradient and the parameters
after 3 AdamW steps within 1e-6 relative (they are in fact bit-identical: the host accumulators add the
same gradients in the same order as ``param.grad`` would). Bookkeeping: no gradient is left on the device
after backward, the most gradient bytes alive at once never exceed the largest layer's parameter bytes
(and the meter does see gradients kept alive), offloaded weights occupy 0 device bytes outside a `weights`
context and, at the peak, exactly a module's and its prefetched successor's bytes.
"""
from __future__ import annotations

import dataclasses

import pytest
import torch

from longctx.runtime.config import ConfigError, MemoryConfig
from longctx.runtime.grad_stream import GradientStream
from tests.memory.memory_cases import CONFIG
from tests.runtime import state_offload_cases as cases
from tests.runtime.conftest import tiny_run
from tests.runtime.test_distributed_training import train_on_rank

pytestmark = pytest.mark.timeout(600)
TOLERANCE = 1e-6
#: against the replicated AdamW (its clip_grad_norm_ and in-place step round differently from the sharded
#: optimizer's float64 norm and fp32 masters: ~1e-7 of noise per step, as in tests/runtime/test_zero.py)
REPLICATED_TOLERANCE = 1e-5
#: activation settings the offloads run under: tiled loss (head offloaded), untiled loss (head resident)
ACTIVATIONS = [
    dict(checkpointing="full", offload="checkpoints", mlp_tile_tokens=7, loss_tile_tokens=50),
    dict(checkpointing="selective", offload="all", mlp_tile_tokens=None, loss_tile_tokens=None),
    dict(checkpointing="full", offload="none", mlp_tile_tokens=None, loss_tile_tokens=50),
    dict(checkpointing="tiled", offload="checkpoints", mlp_tile_tokens=7, loss_tile_tokens=50),
]


def _relative(got: dict, want: dict) -> float:
    return max(float((got[k] - want[k]).abs().max() / max(float(want[k].abs().max()), 1e-30)) for k in want)


def _check_same(got: dict, want: dict, what: str, tolerance: float = TOLERANCE) -> None:
    for step, (g, w) in enumerate(zip(got["gradients"], want["gradients"])):
        error = _relative(g, w)
        assert error <= tolerance, f"{what}: step {step} summed gradient {error:.2e} relative to both off"
    error = _relative(got["params"], want["params"])
    assert error <= tolerance, f"{what}: parameters after 3 steps {error:.2e} relative to both off"


def _check_bookkeeping(got: dict, what: str) -> None:
    assert got["device_grads_left"] == [0, 0, 0], f"{what}: gradients left on the device after backward"
    assert 0 < got["stream_peak"] <= got["largest_layer"], (what, got["stream_peak"], got["largest_layer"])
    if got["residency_peak"] is not None:
        assert got["resident_outside"] == [0] * 6, f"{what}: offloaded weights resident outside weights()"
        assert got["residency_peak"] == got["most_materialised"], (what, got["residency_peak"])


def _settings(sharding: str, activations: dict, optimizer_offload: bool, param_offload: bool) -> MemoryConfig:
    return MemoryConfig(optimizer_sharding=sharding, optimizer_offload=optimizer_offload,
                        param_offload=param_offload, offload_layers_in_flight=1, **activations)


@pytest.mark.parametrize("tied", [False, True])
def test_streaming_and_param_offload_equal_both_off_on_one_process(gloo_pool, tied):
    model = dataclasses.replace(CONFIG, tie_embeddings=tied)
    pool = gloo_pool(1)
    for activations in (ACTIVATIONS[0], ACTIVATIONS[1], ACTIVATIONS[3]):
        off = pool.run(cases.train_on_plans, model, _settings("none", activations, False, False))[0]
        replicated = pool.run(cases.train_on_plans, model, _settings("none", activations, False, False), True)[0]
        for param_offload in (False, True):
            what = f"tied={tied} {activations} param_offload={param_offload}"
            got = pool.run(cases.train_on_plans, model, _settings("none", activations, True, param_offload))[0]
            _check_same(got, off, what)
            _check_same(got, replicated, what + " (vs the replicated AdamW)", REPLICATED_TOLERANCE)
            _check_bookkeeping(got, what)


@pytest.mark.parametrize("sharding, activations", [("none", 3), ("zero1", 1), ("zero2", 2)])
def test_streaming_and_param_offload_equal_both_off_on_4_ranks_with_dynamic_plans(gloo_pool, sharding,
                                                                                   activations):
    pool = gloo_pool(4)
    settings = ACTIVATIONS[activations]
    replicated = pool.run(cases.train_on_plans, CONFIG, _settings("none", settings, False, False), True)
    off = pool.run(cases.train_on_plans, CONFIG, _settings(sharding, settings, False, False))
    for param_offload in (False, True):
        ranks = pool.run(cases.train_on_plans, CONFIG, _settings(sharding, settings, True, param_offload))
        for rank, got in enumerate(ranks):
            what = f"{sharding} {settings} param_offload={param_offload} rank {rank}"
            _check_same(got, off[rank], what)
            _check_same(got, replicated[rank], what + " (vs the replicated AdamW)", REPLICATED_TOLERANCE)
            _check_bookkeeping(got, what)


def test_the_gradient_meter_sees_gradients_kept_alive(gloo_pool):
    got = gloo_pool(1).run(cases.kept_gradients_are_seen, CONFIG)[0]
    assert got["stream_peak"] >= got["model_bytes"] > got["largest_layer"]


def test_longctx_train_with_both_offloads_equals_both_off_and_resumes_exactly(gloo_pool, tiny_dataset, tmp_path):
    """The trainer (dynamic MILP plans on 4 ranks, zero2): both offloads on equal both off after 4 steps,
    and a run stopped after step 2 (checkpoint saved from the host copies) and resumed ends the same."""
    pool = gloo_pool(4)
    common = ("parallel=dynamic", "parallel.planner=milp", "parallel.nprocs=4", "train.precision=fp32",
              "optim.eps=1e-4", "memory.optimizer_sharding=zero2")
    offloads = ("memory.optimizer_offload=true", "memory.param_offload=true")
    off = pool.run(train_on_rank, tiny_run(tiny_dataset, tmp_path / "off", *common))
    straight = pool.run(train_on_rank, tiny_run(tiny_dataset, tmp_path / "on", *common, *offloads))
    stopped = tmp_path / "stopped"
    pool.run(train_on_rank, tiny_run(tiny_dataset, stopped, *common, *offloads, "train.stop_after_steps=2"))
    resumed = pool.run(train_on_rank, tiny_run(tiny_dataset, stopped, *common, *offloads, "train.resume=auto"))
    assert sorted(resumed[0]["losses"]) == [3, 4]
    for rank in range(4):
        error = _relative(straight[rank]["params"], off[rank]["params"])
        assert error <= TOLERANCE, f"rank {rank}: parameters {error:.2e} relative to both off"
        error = _relative(resumed[rank]["params"], straight[rank]["params"])
        assert error <= TOLERANCE, f"rank {rank}: resumed parameters {error:.2e} relative to the straight run"


def test_a_non_finite_streamed_gradient_is_named_by_the_local_check(gloo_pool):
    message = gloo_pool(1).run(cases.streamed_non_finite_gradient_message, CONFIG)[0]
    assert "gradient norm inf on rank 0 at step 7" in message, message


@pytest.mark.parametrize("settings, words", [
    (dict(param_offload=True), ["memory.param_offload=true", "memory.optimizer_offload=false",
                                "set memory.optimizer_offload=true"]),
    (dict(param_offload=True, optimizer_offload=True, checkpointing="none", offload="none"),
     ["memory.param_offload=true", "memory.checkpointing='none'", "memory.checkpointing=full"]),
    (dict(param_offload="yes", optimizer_offload=True), ["memory.param_offload='yes'", "true or false"]),
])
def test_param_offload_settings_are_checked_naming_field_value_and_fix(settings, words):
    with pytest.raises(ConfigError) as error:
        MemoryConfig(**settings)
    assert all(word in str(error.value) for word in words), str(error.value)


def test_a_backward_without_a_parameters_gradient_streams_nothing():
    """Autograd calls the post-accumulate hook also when a Function's backward returned None for the
    parameter (an empty shard's block): the stream must add nothing and keep the accumulator at zero."""
    weight = torch.nn.Parameter(torch.ones(3))
    stream = GradientStream([weight], ring_bytes=12)

    class _NoWeightGradient(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, w):
            return x * 2

        @staticmethod
        def backward(ctx, grad):
            return grad * 2, None

    _NoWeightGradient.apply(torch.ones(3, requires_grad=True), weight).sum().backward()
    (weight * 3).sum().backward()
    assert weight.grad is None and stream.accumulators[0].tolist() == [3.0, 3.0, 3.0]
