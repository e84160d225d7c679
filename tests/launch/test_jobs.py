"""status / cancel --graceful on job directories (no SLURM needed: the files tell the state)."""
from __future__ import annotations

import json

from longctx.launch.job_dir import write_record
from tests.launch.conftest import run_launch_cli


def _sweep_dir(tmp_path):
    runs = []
    for index in range(2):
        (tmp_path / str(index) / "checkpoints" / "step_3").mkdir(parents=True)
        runs.append({"output_dir": str(tmp_path / str(index)), "overrides": [], "swept": {}})
    (tmp_path / "0" / "final_metrics.json").write_text(json.dumps({"step": 4, "loss": 1.5}))
    write_record(tmp_path, {"runs": runs, "job_id": None})
    return tmp_path


def test_status_reports_each_run_from_its_files(tmp_path):
    sweep = _sweep_dir(tmp_path)
    code, out, err = run_launch_cli(["status", str(sweep / "1")])  # a run directory finds its sweep
    assert code == 0, err
    assert "  0: finished: {'step': 4, 'loss': 1.5}" in out
    assert "  1: not finished; latest checkpoint: step 3" in out


def test_graceful_cancel_asks_every_run_to_checkpoint_and_stop(tmp_path):
    sweep = _sweep_dir(tmp_path)
    code, out, err = run_launch_cli(["cancel", "--graceful", str(sweep)])
    assert code == 0, err
    assert (sweep / "0" / "STOP").exists() and (sweep / "1" / "STOP").exists()
    code, out, err = run_launch_cli(["cancel", str(sweep)])
    assert code == 2 and "launched locally" in err
