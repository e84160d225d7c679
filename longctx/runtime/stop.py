"""Graceful stop: SIGUSR2 / SIGTERM, or a `<output_dir>/STOP` file, end the run after the current step.

Each rank notes a signal in a flag (the handler does nothing else); at every
step end `GracefulStop.agreed(...)` all-reduces (MAX) the ranks' wishes, so every
rank stops after the same step, saves the checkpoint with the others and exits 0.
"""
from __future__ import annotations

import signal
import threading
from pathlib import Path

import torch
import torch.distributed as dist

from longctx.runtime.comm_device import comm_tensor

STOP_SIGNALS = (signal.SIGUSR2, signal.SIGTERM)
STOP_FILE = "STOP"
PREEMPTED_FILE = "PREEMPTED"


class GracefulStop:
    """Collects stop requests on this rank; `agreed` turns them into one world-wide decision."""

    def __init__(self, output_dir: str | Path) -> None:
        self.stop_file = Path(output_dir) / STOP_FILE
        self.signalled: int | None = None
        self._previous: dict[int, object] = {}
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                self._previous[sig] = signal.signal(sig, self._note)

    def _note(self, signum: int, frame: object) -> None:
        self.signalled = signum

    def agreed(self, also: bool = False) -> bool:
        """True on every rank iff any rank was signalled, sees the STOP file, or passes `also` (collective)."""
        wish = comm_tensor([int(bool(self.signalled) or self.stop_file.exists() or also)], torch.int32)
        dist.all_reduce(wish, op=dist.ReduceOp.MAX)
        return bool(wish.item())

    def close(self) -> None:
        """Put the previous signal handlers back."""
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
