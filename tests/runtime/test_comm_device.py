"""Every collective and P2P op of training gets tensors on the device `runtime.comm_device` chose.

A recording wrapper replaces torch.distributed's collective and P2P functions
on every rank (in `torch.distributed.distributed_c10d` too, so the object
collectives' inner calls and DCP's are seen), notes the device of every tensor
handed to them and calls through. Training runs a dynamic step, a static step
and a checkpoint under it. On CPU gloo the chosen device is cpu, so the CPU
run catches any tensor put on another device; the `gpu` case runs the same
recorder on an NCCL world of one, where a CPU tensor (the bug this guards
against: metrics and the stop vote on CPU) is caught.
"""
from __future__ import annotations

import functools
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.distributed.distributed_c10d as c10d

from longctx.runtime.comm_device import comm_device
from longctx.runtime.trainer import train
from tests.runtime.conftest import tiny_run

pytestmark = pytest.mark.timeout(600)

#: the torch.distributed functions that move tensors between ranks
RECORDED = ("all_reduce", "all_gather", "all_gather_into_tensor", "all_gather_single", "reduce_scatter",
            "reduce_scatter_tensor", "reduce_scatter_single", "all_to_all", "all_to_all_single", "broadcast",
            "reduce", "gather", "scatter", "send", "recv", "isend", "irecv", "batch_isend_irecv")


def _tensors(obj):
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, (list, tuple)):
        for item in obj:
            yield from _tensors(item)
    elif isinstance(obj, dist.P2POp):
        yield obj.tensor


def recording(fn, name: str, expected: torch.device, log: list[tuple[str, str]]):
    """`fn` wrapped: append (name, device) of every tensor argument to `log`, then call `fn`."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        for tensor in _tensors([*args, *kwargs.values()]):
            log.append((name, str(tensor.device)))
        return fn(*args, **kwargs)

    wrapper.expected = expected
    return wrapper


def train_recording_devices(run) -> dict:
    """Train `run` with every recorded function wrapped; return the chosen device and the log (one rank)."""
    expected, log, originals = comm_device(), [], {}
    for name in RECORDED:
        wrapped = recording(getattr(c10d, name), name, expected, log)  # one object: P2POp checks op identity
        for module in (c10d, dist):
            originals[(module, name)] = getattr(module, name)
            setattr(module, name, wrapped)
    try:
        train(run)
    finally:
        for (module, name), fn in originals.items():
            setattr(module, name, fn)
    return {"expected": str(expected), "log": log}


def _check(results: list[dict], must_see: set[str]) -> None:
    for rank, result in enumerate(results):
        wrong = sorted({(name, device) for name, device in result["log"] if device != result["expected"]})
        assert not wrong, f"rank {rank}: collectives got tensors off {result['expected']}: {wrong}"
    seen = {name for result in results for name, _ in result["log"]}
    assert must_see <= seen, f"the recorder saw only {sorted(seen)}; expected at least {sorted(must_see)}"


def test_recorder_notes_a_tensor_on_another_device():
    log = []
    wrapped = recording(lambda tensors, group=None: None, "all_gather", torch.device("cpu"), log)
    wrapped([torch.empty(2, device="meta")], group=None)
    assert log == [("all_gather", "meta")]


def test_dynamic_and_static_steps_with_checkpoints_communicate_on_the_chosen_device(gloo_pool, tiny_dataset,
                                                                                   tmp_path):
    # step 1 dynamic (a ring/ulysses/hybrid plan), step 2 checkpointed; then a static cp=2 ring run
    dynamic = tiny_run(tiny_dataset, tmp_path / "dynamic", "parallel=dynamic", "parallel.planner=greedy",
                       "train.steps=2", "train.checkpoint_every=1")
    _check(gloo_pool(4).run(train_recording_devices, dynamic),
           must_see={"all_reduce", "all_gather", "broadcast", "isend", "irecv", "batch_isend_irecv"})
    static = tiny_run(tiny_dataset, tmp_path / "static", "parallel=static", "parallel.cp=2",
                      "parallel.max_tokens_per_rank=null", "train.steps=1")
    _check(gloo_pool(4).run(train_recording_devices, static), must_see={"all_reduce", "all_gather", "isend"})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_nccl_world_of_one_communicates_on_cuda_only(tiny_dataset, tmp_path):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()))
    torch.cuda.set_device(0)
    dist.init_process_group("nccl", rank=0, world_size=1)
    try:
        run = tiny_run(tiny_dataset, tmp_path, "parallel.nprocs=1", "parallel.max_tokens_per_rank=null",
                       "train.steps=2", "train.checkpoint_every=1", "train.precision=bf16")
        result = train_recording_devices(run)
    finally:
        dist.destroy_process_group()
    assert result["expected"].startswith("cuda")
    _check([result], must_see={"all_reduce", "all_gather", "broadcast"})
