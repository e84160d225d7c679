"""A persistent pool of gloo ranks that runs functions on every rank.

Starting P processes and a gloo process group costs seconds, so tests start a
pool once per world size and run many cases inside it::

    with GlooPool(world_size=4) as pool:
        results = pool.run(my_module.case, arg1, arg2)   # list, one per rank

`fn` must be importable by module path (a module-level function) because the
ranks are spawned processes. It is called as ``fn(*args, **kwargs)`` on every
rank after ``torch.distributed`` is initialised with the gloo backend; rank and
world size come from ``torch.distributed``. Return values must pickle.

An exception on any rank is re-raised in the parent as `RemoteError` with the
rank's traceback. A rank that fails may leave its peers blocked in a
collective; the pool then times out (``timeout_s``), is torn down, and must be
recreated — `run` raises in that case and marks the pool broken.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import queue
import socket
import traceback
from typing import Any, Callable


class RemoteError(RuntimeError):
    """An exception raised on one of the pool's ranks."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world_size: int, port: int, tasks: mp.Queue, results: mp.Queue, threads: int) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    import torch
    import torch.distributed as dist

    torch.set_num_threads(threads)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size
    )
    while True:
        task = tasks.get()
        if task is None:
            break
        fn, args, kwargs = task
        try:
            results.put((rank, True, fn(*args, **kwargs)))
        except BaseException:  # noqa: BLE001 - report every failure to the parent
            results.put((rank, False, traceback.format_exc()))
    dist.destroy_process_group()


class GlooPool:
    """`world_size` spawned processes sharing one gloo process group."""

    def __init__(self, world_size: int, timeout_s: float = 300.0, threads_per_rank: int = 1):
        if world_size < 1:
            raise ValueError(f"GlooPool: world_size={world_size} must be >= 1")
        self.world_size = world_size
        self.timeout_s = timeout_s
        ctx = mp.get_context("spawn")
        port = _free_port()
        self._tasks = [ctx.Queue() for _ in range(world_size)]
        self._results = ctx.Queue()
        self._procs = [
            ctx.Process(
                target=_worker,
                args=(r, world_size, port, self._tasks[r], self._results, threads_per_rank),
                daemon=True,
            )
            for r in range(world_size)
        ]
        for p in self._procs:
            p.start()
        self.broken = False

    def run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> list[Any]:
        """Run ``fn(*args, **kwargs)`` on every rank; return the results by rank."""
        if self.broken:
            raise RuntimeError("GlooPool is broken after an earlier failure; create a new pool")
        for q in self._tasks:
            q.put((fn, args, kwargs))
        out: list[Any] = [None] * self.world_size
        failures: list[str] = []
        for _ in range(self.world_size):
            try:
                rank, ok, value = self._results.get(timeout=self.timeout_s)
            except queue.Empty:
                self.broken = True
                self.close()
                detail = "\n".join(failures)
                raise RemoteError(
                    f"GlooPool: a rank did not answer within {self.timeout_s}s "
                    f"(likely blocked in a collective after a peer failed)\n{detail}"
                ) from None
            if ok:
                out[rank] = value
            else:
                failures.append(f"--- rank {rank} ---\n{value}")
        if failures:
            raise RemoteError("\n".join(failures))
        return out

    def close(self) -> None:
        for q, p in zip(self._tasks, self._procs):
            if p.is_alive():
                try:
                    q.put(None)
                except (OSError, ValueError):
                    pass
        for p in self._procs:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()

    def __enter__(self) -> "GlooPool":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
