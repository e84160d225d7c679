"""`longctx train` through `longctx launch` on the real local SLURM cluster.

One module fixture submits three jobs at once (a 2-node x 2-process run, the
same run to be preempted, a 2-point sweep), preempts the second mid-run, and
runs the same training locally as the reference while SLURM works; the tests
then check each outcome. Training is the tiniest: the smoke experiment on a
512-token step budget.
"""
from __future__ import annotations

import csv
import json
import re
import subprocess
from pathlib import Path

import pytest

from longctx.tracking import run_id_for
from tests.launch.conftest import run_launch_cli
from tests.tracking.wandb_records import history_rows

pytestmark = pytest.mark.slurm

STEPS = 6
TRAINING = ["experiment=smoke", "data.tokens_per_step=512", "data.max_doc_tokens=128", f"train.steps={STEPS}"]
TWO_NODES = ["launcher.nodes=2", "launcher.procs_per_node=2", "launcher.time=00:10:00", "launcher.rdzv_timeout=120"]
JOB_TIMEOUT_S = 300


def _job_report(cluster, job_id: str, job_dir: Path, tail_chars: int = 3000) -> str:
    """SLURM's record of the job and the end of every log file under its directory, for assertion messages."""
    try:
        record = cluster.scontrol("show", "job", job_id, "-o")
    except RuntimeError as err:
        record = f"(scontrol failed: {err})"
    logs = sorted(p for p in (job_dir / "logs").rglob("*") if p.is_file()) if (job_dir / "logs").is_dir() else []
    tails = "\n".join(f"--- {p.relative_to(job_dir)}:\n{p.read_text(errors='replace')[-tail_chars:]}" for p in logs)
    return f"{record}\n{tails or '(no logs)'}"


def _losses(run_dir: Path) -> dict[int, float]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return {row["step"]: row["loss"] for row in rows}


def _preempt_mid_run(cluster, job_id: str, run_dir: Path) -> int:
    """USR2 to the batch shell once the trainer's tracker is up; release the requeued job;
    return the step the trainer stopped after (from the batch log)."""
    cluster.wait_until(lambda: (run_dir / "wandb").exists() or cluster.job_state(job_id) not in ("PENDING", "RUNNING"),
                       JOB_TIMEOUT_S, f"job {job_id} to start training")
    assert cluster.job_state(job_id) == "RUNNING", f"job {job_id} ended before it could be preempted"
    subprocess.run(["scancel", "--signal=USR2", "--batch", job_id], check=True, timeout=30)
    cluster.wait_until(lambda: "Restarts=1" in cluster.scontrol("show", "job", job_id, "-o")
                       and cluster.job_state(job_id) not in ("REQUEUED", "COMPLETING"),
                       JOB_TIMEOUT_S, f"job {job_id} to be requeued")
    if cluster.job_state(job_id) == "PENDING":  # SLURM holds a requeued job ~2 min; release it now
        cluster.scontrol("update", f"jobid={job_id}", "StartTime=now")
    batch_log = next((run_dir / "logs").glob("slurm-*.out")).read_text()
    return int(re.search(r"trainer stopped after step (\d+)", batch_log).group(1))


@pytest.fixture(scope="module")
def jobs(slurm_cluster, tmp_path_factory):
    root = tmp_path_factory.mktemp("training")
    common = [f"launcher.output_root={root}", *TRAINING]
    submitted = {
        "full": slurm_cluster.submit([*common, *TWO_NODES]),
        "preempted": slurm_cluster.submit([*common, *TWO_NODES, "tracker=wandb", "launcher.job_name=preempted"]),
        "sweep": slurm_cluster.submit(["-m", *common, "train.steps=2", "optim.lr=1e-3,3e-3", "launcher.job_name=sweep"]),
    }
    preempt_id, preempt_dir = submitted["preempted"]
    stopped_after = _preempt_mid_run(slurm_cluster, preempt_id, preempt_dir)
    code, out, err = run_launch_cli(["local", *common, "launcher.procs_per_node=4", "launcher.job_name=local"])
    assert code == 0, err
    local_dir = Path(out.split("job directory:", 1)[1].split()[0])
    return {**submitted, "local_dir": local_dir, "stopped_after": stopped_after}


@pytest.fixture(autouse=True)
def _from_repo_root(in_repo_root):
    """Jobs start in the directory they were submitted from."""


def test_two_node_sbatch_training_has_the_losses_of_the_same_run_launched_locally(jobs, slurm_cluster):
    job_id, job_dir = jobs["full"]
    states = slurm_cluster.wait_terminal(job_id, JOB_TIMEOUT_S)
    assert states == ["COMPLETED"], _job_report(slurm_cluster, job_id, job_dir)
    slurm_losses, local_losses = _losses(job_dir), _losses(jobs["local_dir"])
    assert sorted(slurm_losses) == list(range(1, STEPS + 1))
    assert slurm_losses == pytest.approx(local_losses, rel=1e-5), (slurm_losses, local_losses)
    assert "nprocs: 4" in (job_dir / "config.yaml").read_text()


def test_preempted_job_requeues_resumes_and_ends_with_the_uninterrupted_loss_in_one_tracker_run(jobs, slurm_cluster):
    job_id, job_dir = jobs["preempted"]
    states = slurm_cluster.wait_terminal(job_id, JOB_TIMEOUT_S)
    assert states == ["COMPLETED"], _job_report(slurm_cluster, job_id, job_dir)
    assert 1 <= jobs["stopped_after"] < STEPS
    final = json.loads((job_dir / "final_metrics.json").read_text())
    reference = json.loads((jobs["local_dir"] / "final_metrics.json").read_text())
    assert final["step"] == STEPS and final["loss"] == pytest.approx(reference["loss"], rel=1e-5)
    batch_log = next((job_dir / "logs").glob("slurm-*.out")).read_text()
    assert f"trainer stopped after step {jobs['stopped_after']}" in batch_log and "requeueing job" in batch_log
    assert "restart 1" in batch_log
    assert not (job_dir / "STOP").exists() and not (job_dir / "PREEMPTED").exists()
    run_dirs = sorted((job_dir / "wandb").glob("offline-run-*"))
    assert len(run_dirs) == 2 and {d.name.rsplit("-", 1)[1] for d in run_dirs} == {run_id_for(str(job_dir))}
    logged = sorted(row["_step"] for d in run_dirs for row in history_rows(next(d.glob("run-*.wandb"))) if "loss" in row)
    assert logged == list(range(1, STEPS + 1)), "the two attempts together must log every step exactly once"


def test_two_point_sweep_is_a_job_array_and_collect_writes_one_csv_row_per_point(jobs, slurm_cluster):
    job_id, sweep_dir = jobs["sweep"]
    assert slurm_cluster.wait_terminal(job_id, JOB_TIMEOUT_S) == ["COMPLETED", "COMPLETED"], \
        _job_report(slurm_cluster, job_id, sweep_dir)
    assert "#SBATCH --array=0-1" in (sweep_dir / "job.sbatch").read_text()
    code, out, err = run_launch_cli(["collect", str(sweep_dir)])
    assert code == 0, err
    with (sweep_dir / "results.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["task"], r["optim.lr"], r["status"], r["step"]) for r in rows] == [
        ("0", "0.001", "finished", "2"), ("1", "0.003", "finished", "2"),
    ]  # fmt: skip
    assert rows[0]["loss"] != rows[1]["loss"]
    for row in rows:
        assert float(row["loss"]) == json.loads((Path(row["output_dir"]) / "final_metrics.json").read_text())["loss"]
