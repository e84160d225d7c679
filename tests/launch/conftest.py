"""A real two-node SLURM cluster on localhost for the session, and helpers to drive jobs.

The cluster is started once (tests/launch/slurm_cluster.sh installs Debian's
slurmctld, slurmd, slurm-client and munge if missing) and stopped by pid at the
end. Tests that use it are marked `slurm`. When SLURM cannot be installed here
(no root / no apt-get / the install fails) they FAIL, so a CI machine without
SLURM never passes by skipping; a developer without root can opt out
explicitly with ``LONGCTX_SKIP_SLURM=1`` (then they skip, saying so).
"""
from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from longctx.launch import cli

REPO_ROOT = Path(__file__).resolve().parents[2]
CLUSTER_SCRIPT = Path(__file__).with_name("slurm_cluster.sh")
CANNOT_INSTALL = 3  # slurm_cluster.sh's exit code when SLURM cannot be installed
#: the explicit opt-out for machines that cannot install SLURM (never set in CI)
SKIP_SLURM_VARIABLE = "LONGCTX_SKIP_SLURM"
TERMINAL_STATES = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE"}


def run_launch_cli(argv: list[str]) -> tuple[int, str, str]:
    """`longctx launch <argv>` in this process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(argv)
    return code, out.getvalue(), err.getvalue()


@dataclasses.dataclass
class SlurmCluster:
    state_dir: Path

    def scontrol(self, *args: str) -> str:
        done = subprocess.run(["scontrol", *args], capture_output=True, text=True, timeout=30)
        if done.returncode != 0:
            raise RuntimeError(f"scontrol {' '.join(args)} failed: {done.stderr}")
        return done.stdout

    def job_state(self, job_id: str) -> str:
        match = re.search(r"JobState=(\S+)", self.scontrol("show", "job", job_id, "-o"))
        return match.group(1) if match else "UNKNOWN"

    def array_states(self, job_id: str) -> list[str]:
        return re.findall(r"JobState=(\S+)", self.scontrol("show", "job", job_id, "-o"))

    def wait_until(self, predicate, timeout_s: float, what: str, poll_s: float = 1.0) -> None:
        """Poll `predicate()` until true; fail after `timeout_s` naming `what`."""
        deadline = time.monotonic() + timeout_s
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
            time.sleep(poll_s)

    def wait_terminal(self, job_id: str, timeout_s: float) -> list[str]:
        """Wait until every task of the job is in a terminal state; return the states."""
        self.wait_until(
            lambda: set(self.array_states(job_id)) <= TERMINAL_STATES,
            timeout_s,
            f"job {job_id} to end (states {self.array_states(job_id)})",
        )
        return self.array_states(job_id)

    def submit(self, overrides: list[str]) -> tuple[str, Path]:
        """`longctx launch slurm <overrides>`: (job id, job directory)."""
        code, out, err = run_launch_cli(["slurm", *overrides])
        assert code == 0, f"launch slurm failed: {err}"
        job_id = re.search(r"submitted job (\d+)", out).group(1)
        job_dir = Path(re.search(r"job directory: (.+)", out).group(1).strip())
        return job_id, job_dir


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    """The running cluster; SLURM_CONF is set in os.environ for the session."""
    if os.environ.get(SKIP_SLURM_VARIABLE) == "1":
        pytest.skip(f"{SKIP_SLURM_VARIABLE}=1: the SLURM tests were switched off explicitly")
    state = tmp_path_factory.mktemp("slurm")
    try:
        done = subprocess.run(
            ["bash", str(CLUSTER_SCRIPT), "start", str(state), "4"], capture_output=True, text=True, timeout=600
        )
    except subprocess.TimeoutExpired:
        pytest.fail("tests/launch/slurm_cluster.sh start did not finish within 600 s")
    if done.returncode == CANNOT_INSTALL:
        pytest.fail(f"SLURM cannot be installed on this machine: {done.stderr.strip()}; install Debian's slurmctld, "
                    f"slurmd, slurm-client and munge (as .ci/run does), or set {SKIP_SLURM_VARIABLE}=1 to skip "
                    "the SLURM tests on purpose")
    if done.returncode != 0:
        logs = "\n".join(p.read_text()[-2000:] for p in sorted((state / "log").glob("*.log")))
        pytest.fail(f"the local SLURM cluster did not start: {done.stderr.strip()}\n{logs}")
    previous = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(state / "slurm.conf")
    try:
        yield SlurmCluster(state)
    finally:
        subprocess.run(["scancel", "--full", "--user=root"], capture_output=True, timeout=30)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            queue = subprocess.run(["squeue", "-h"], capture_output=True, text=True, timeout=30).stdout
            if not queue.strip():
                break
            time.sleep(0.5)
        subprocess.run(["bash", str(CLUSTER_SCRIPT), "stop", str(state)], capture_output=True, timeout=120)
        if previous is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = previous


@pytest.fixture
def in_repo_root(monkeypatch):
    """Run from the repository root, so jobs (which start in the submit directory) import `tests.*`."""
    monkeypatch.chdir(REPO_ROOT)
    return REPO_ROOT


PROBE_CONFIG = """\
train:
  output_dir: runs/default
  run_name: probe
  steps: 3
"""


@pytest.fixture
def probe_config_dir(tmp_path) -> Path:
    """A minimal Hydra config tree (config.yaml with a train group) for jobs that run tests.launch.probe."""
    config_dir = tmp_path / "probe_configs"
    config_dir.mkdir()
    (config_dir / "config.yaml").write_text(PROBE_CONFIG)
    return config_dir
