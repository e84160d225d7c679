"""Fault-suite fixtures: the runtime tests' tiny dataset, and a process that holds a run directory's lock."""
from __future__ import annotations

import subprocess
import sys

import pytest

from tests.runtime.conftest import tiny_dataset  # noqa: F401 - the shared session fixture

HOLD_LOCK = (
    "import sys, time\n"
    "from longctx.runtime.run_lock import RunLock\n"
    "RunLock(sys.argv[1]).acquire()\n"
    "print('held', flush=True)\n"
    "time.sleep(600)\n"
)


@pytest.fixture
def lock_holder():
    """``start(output_dir) -> Popen``: a live process holding `output_dir`'s run lock (killed at teardown)."""
    started = []

    def start(output_dir) -> subprocess.Popen:
        output_dir.mkdir(parents=True, exist_ok=True)
        process = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(output_dir)], stdout=subprocess.PIPE,
                                   text=True)
        started.append(process)
        assert process.stdout.readline().strip() == "held"
        return process

    yield start
    for process in started:
        process.kill()
        process.wait()
