"""One run at a time per output directory: an exclusive lock file naming its holder (no torch).

``<output_dir>/.longctx.lock`` holds ``{"pid", "host", "started"}`` of the
process that runs there (the launching `longctx train`, or rank 0 under
torchrun/srun) and is `flock`-ed by it for the whole run. The kernel drops
the flock when that process dies, however it dies, so a lock file whose
flock can be taken is *stale*: its holder ended without cleaning up. A stale
lock is taken over and reported; a live one makes the second run fail,
naming the holder.
"""
from __future__ import annotations

import datetime
import fcntl
import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path

LOCK_FILE = ".longctx.lock"


class RunDirLockedError(RuntimeError):
    """Another live run holds the output directory; the message names it."""


@dataclass(frozen=True)
class LockHolder:
    """Who holds (or held) a run directory's lock."""

    pid: int
    host: str
    #: UTC start time, ISO 8601
    started: str

    def describe(self) -> str:
        return f"pid {self.pid} on host {self.host}, started {self.started}"

    @staticmethod
    def parse(text: str) -> "LockHolder | None":
        """The holder recorded in a lock file's `text`, or None when it names none."""
        try:
            fields = json.loads(text)
            return LockHolder(int(fields["pid"]), str(fields["host"]), str(fields["started"]))
        except (ValueError, KeyError, TypeError):
            return None


class RunLock:
    """The exclusive lock of one run directory, held from `acquire` to `release`."""

    def __init__(self, output_dir: str | os.PathLike) -> None:
        self.path = Path(output_dir) / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> LockHolder | None:
        """Take the lock; returns the stale holder it replaced (None if there was none).

        Raises RunDirLockedError naming the holder when a live process holds it.
        """
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = LockHolder.parse(self.path.read_text())
                os.close(fd)
                who = holder.describe() if holder else "another process"
                raise RunDirLockedError(
                    f"train.output_dir={str(self.path.parent)!r} is in use by a running longctx train ({who}; lock "
                    f"file {self.path}); wait for it to end or stop it (touch {self.path.parent / 'STOP'}), or "
                    "give this run another train.output_dir"
                ) from None
            if self._same_file(fd):
                break
            os.close(fd)  # the holder released (and removed) the file between our open and flock: retry
        stale = LockHolder.parse(os.pread(fd, 1 << 16, 0).decode(errors="replace"))
        mine = LockHolder(os.getpid(), socket.gethostname(),
                          datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(mine.__dict__).encode() + b"\n", 0)
        os.fsync(fd)
        self._fd = fd
        return stale

    def _same_file(self, fd: int) -> bool:
        try:
            return os.stat(self.path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            return False

    def release(self) -> None:
        """Remove the lock file and drop the lock (idempotent)."""
        if self._fd is None:
            return
        self.path.unlink(missing_ok=True)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> "RunLock":
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
