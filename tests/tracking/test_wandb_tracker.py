"""The wandb tracker writes a real offline run that holds the logged metrics and resumes by output_dir."""
from __future__ import annotations

import time
from pathlib import Path

import wandb  # noqa: F401  (a [test] dependency: a missing one fails, never skips)

from longctx.tracking import make_tracker, run_id_for
from tests.tracking.wandb_records import history_rows


def test_wandb_offline_run_holds_metrics_and_restart_continues_the_same_run(tmp_path):
    output_dir = tmp_path / "job"
    first = make_tracker("wandb", output_dir=str(output_dir), run_name="tiny", config={"lr": 0.001})
    for step in range(3):
        first.log({"loss": 2.0 - 0.25 * step, "lr": 1e-3}, step=step)
    first.finish()
    restarted = make_tracker("wandb", output_dir=str(output_dir), run_name="tiny", config={"lr": 0.001})
    restarted.log({"loss": 1.0, "lr": 5e-4}, step=3)
    restarted.finish()

    run_id = run_id_for(str(output_dir))
    assert len(run_id) == 12 and first.run.id == restarted.run.id == run_id
    run_dirs = sorted((output_dir / "wandb").glob(f"offline-run-*-{run_id}"))
    run_files = [next(d.glob("run-*.wandb")) for d in run_dirs]
    assert all(f.name == f"run-{run_id}.wandb" for f in run_files), run_files
    logged = sorted(
        (row["_step"], row["loss"], row["lr"]) for f in run_files for row in history_rows(f) if "loss" in row
    )
    assert logged == [(0, 2.0, 1e-3), (1, 1.75, 1e-3), (2, 1.5, 1e-3), (3, 1.0, 5e-4)]


def test_run_id_depends_only_on_the_resolved_output_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert run_id_for("job") == run_id_for(str(tmp_path / "job")) == run_id_for(str(Path("job") / ".." / "job"))
    assert run_id_for("job") != run_id_for("other")
