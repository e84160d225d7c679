"""Jobs on the real local SLURM cluster that run a tiny gloo program (tests.launch.probe):
multi-node rendezvous, what reaches the job, the job directory, and a rendezvous
that cannot succeed."""
from __future__ import annotations

import json
import socket
import time

import pytest

from longctx.launch.resolve import quote_override_value
from tests.launch.conftest import run_launch_cli

pytestmark = pytest.mark.slurm

PROBE = ["launcher.module=tests.launch.probe", "launcher.args=[]", "launcher.time=00:05:00"]


def test_two_nodes_two_procs_rendezvous_and_config_strings_arrive_literally(
    slurm_cluster, in_repo_root, tmp_path, probe_config_dir
):
    canary = tmp_path / "pwned"
    hostile = f"it's \"q\" $(touch {canary}) `touch {canary}`; touch {canary}\nline 2 $HOME"
    job_id, job_dir = slurm_cluster.submit([
        f"--config-dir={probe_config_dir}", f"launcher.output_root={tmp_path / 'runs'}", *PROBE,
        "launcher.nodes=2", "launcher.procs_per_node=2", "launcher.rdzv_timeout=60",
        f"launcher.env.MSG={quote_override_value(hostile)}",
        f"launcher.job_name={quote_override_value(hostile.replace(chr(10), ' '))}",
        f"train.run_name={quote_override_value(hostile)}",
    ])  # fmt: skip
    assert slurm_cluster.wait_terminal(job_id, timeout_s=120) == ["COMPLETED"], (job_dir / "logs").iterdir()
    report = json.loads((job_dir / "probe.json").read_text())
    assert (report["world_size"], report["sum"]) == (4, 10.0)  # all_reduce of rank + 1 over 2 nodes x 2 ranks
    assert report["argv"][0] == f"train.run_name={quote_override_value(hostile)}"
    assert report["msg"] == hostile
    assert f"JobName={hostile.replace(chr(10), ' ')}" in slurm_cluster.scontrol("show", "job", job_id)
    assert not canary.exists(), "a config value was executed by a shell"

    for name in ("job.sbatch", "config.yaml", "git.txt", "pip-freeze.txt", "launch.json"):
        assert (job_dir / name).is_file(), name
    assert json.loads((job_dir / "launch.json").read_text())["job_id"] == job_id
    rank_logs = sorted(p.relative_to(job_dir / "logs").parts for p in (job_dir / "logs").glob("ranks-*/*/*/attempt_0/*"))
    assert [(parts[1], parts[-1]) for parts in rank_logs] == [("n1", "0"), ("n1", "1"), ("n2", "0"), ("n2", "1")]
    code, out, _ = run_launch_cli(["status", str(job_dir)])
    assert code == 0 and f"job {job_id}: COMPLETED" in out
    code, out, _ = run_launch_cli(["logs", job_id, "--ranks"])
    assert code == 0 and "rendezvous at 127.0.0.1:" in out and out.count("stdout.log <==") == 4


def test_rendezvous_that_cannot_complete_fails_within_its_timeout_naming_host_and_port(
    slurm_cluster, in_repo_root, tmp_path, probe_config_dir
):
    # Something else holds the rendezvous port and never answers: the store client would block forever.
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen(8)
        port = squatter.getsockname()[1]
        start = time.monotonic()
        job_id, job_dir = slurm_cluster.submit([
            f"--config-dir={probe_config_dir}", f"launcher.output_root={tmp_path / 'runs'}", *PROBE,
            "launcher.nodes=2", "launcher.rdzv_timeout=5", f"launcher.rdzv_port={port}",
        ])  # fmt: skip
        states = slurm_cluster.wait_terminal(job_id, timeout_s=90)
        elapsed = time.monotonic() - start
    assert states == ["FAILED"]
    assert elapsed < 60, f"the failed rendezvous took {elapsed:.0f} s (timeout 5 s + 10 s watchdog margin)"
    log = next((job_dir / "logs").glob("slurm-*.out")).read_text()
    assert "RENDEZVOUS FAILED on node n" in log and f"c10d rendezvous at 127.0.0.1:{port}" in log, log
