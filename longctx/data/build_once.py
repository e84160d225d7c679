"""Build a cached artifact once, even when several processes (ranks) ask for it at the same time."""
from __future__ import annotations

import fcntl
import os
from typing import Callable


def build_once(lock_path: str, is_complete: Callable[[], bool], build: Callable[[], None]) -> None:
    """Run ``build()`` unless ``is_complete()``; concurrent callers build it once.

    The builder holds an exclusive ``flock`` on ``lock_path``; the others wait
    for it and then find the artifact complete. ``build`` must make the
    artifact appear atomically (write under a temporary name, then rename), so
    ``is_complete`` never sees half of it.
    """
    if is_complete():
        return
    os.makedirs(os.path.dirname(os.path.abspath(lock_path)), exist_ok=True)
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not is_complete():
            build()
