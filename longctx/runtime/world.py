"""Starting the world a training run executes in: spawned local processes, or an external torchrun/srun.

`longctx train` under torchrun (env RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR,
MASTER_PORT) is one rank of that world; otherwise it spawns `parallel.nprocs`
local processes that rendezvous over TCP on 127.0.0.1. The backend is nccl on
CUDA and gloo on CPU (`parallel.backend=auto`).
"""
from __future__ import annotations

import os
import signal
import socket
from datetime import timedelta
from typing import Callable

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from longctx.runtime.config import RunConfig
from longctx.runtime.stop import STOP_SIGNALS

TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
#: how long a collective may wait before the job fails loudly instead of hanging
COLLECTIVE_TIMEOUT = timedelta(minutes=10)


def under_torchrun() -> bool:
    """True when the torchrun/srun environment of an external world is present."""
    return all(name in os.environ for name in TORCHRUN_VARIABLES)


def resolve_backend(requested: str) -> str:
    """"nccl" or "gloo" for `parallel.backend` ("auto": nccl when CUDA is available)."""
    if requested == "auto":
        return "nccl" if torch.cuda.is_available() else "gloo"
    if requested == "nccl" and not torch.cuda.is_available():
        raise RuntimeError("parallel.backend=nccl needs CUDA, which this process cannot see; use gloo or auto")
    return requested


def _bind_device(backend: str, local_rank: int) -> torch.device | None:
    """nccl: make this process's GPU (local rank modulo the GPUs) current and return it, so the world's
    communicator is created eagerly at init on it (the only one the runtime uses, see
    `longctx.runtime.process_groups`); gloo: None."""
    if backend != "nccl":
        return None
    device = torch.device("cuda", local_rank % torch.cuda.device_count())
    torch.cuda.set_device(device)
    return device


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_in_external_world(run: RunConfig, body: Callable[[RunConfig], object]) -> None:
    """Join the torchrun world described by the environment, run `body(run)`, leave."""
    backend = resolve_backend(run.parallel.backend)
    device = _bind_device(backend, int(os.environ["LOCAL_RANK"]))
    dist.init_process_group(backend, init_method="env://", timeout=COLLECTIVE_TIMEOUT, device_id=device)
    try:
        body(run)
    finally:
        dist.destroy_process_group()


def _spawned_rank(rank: int, run: RunConfig, port: int, body: Callable[[RunConfig], object]) -> None:
    threads = max(1, (os.cpu_count() or 1) // run.parallel.nprocs)
    torch.set_num_threads(threads)
    backend = resolve_backend(run.parallel.backend)
    device = _bind_device(backend, rank)
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=run.parallel.nprocs, timeout=COLLECTIVE_TIMEOUT, device_id=device)
    try:
        body(run)
    finally:
        dist.destroy_process_group()


def run_spawned(run: RunConfig, body: Callable[[RunConfig], object]) -> None:
    """Spawn `parallel.nprocs` local ranks running `body(run)`; SIGTERM/SIGUSR2 are passed on to them.

    Raises `torch.multiprocessing.ProcessRaisedException` (or ProcessExitedException) when a rank fails.
    """
    context = mp.start_processes(_spawned_rank, args=(run, _free_port(), body), nprocs=run.parallel.nprocs,
                                 join=False, start_method="spawn")

    def forward(signum: int, frame: object) -> None:
        for pid in context.pids():
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

    previous = {sig: signal.signal(sig, forward) for sig in STOP_SIGNALS}
    try:
        while not context.join(timeout=1.0):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
