"""Sweep expansion (Hydra basic-sweeper order) and `collect`'s CSV, on real files."""
from __future__ import annotations

import csv
import json

import pytest

from longctx.launch.job_dir import write_record
from longctx.launch.overrides import OverrideError
from longctx.launch.sweep import collect, expand_sweep, swept_values


def test_expansion_is_the_product_in_order_with_the_last_override_fastest():
    runs = expand_sweep(["optim.lr=1e-3,2e-3", "model=tiny", "train.seed=range(0,2)"])
    assert runs == [
        ["optim.lr=0.001", "model=tiny", "train.seed=0"], ["optim.lr=0.001", "model=tiny", "train.seed=1"],
        ["optim.lr=0.002", "model=tiny", "train.seed=0"], ["optim.lr=0.002", "model=tiny", "train.seed=1"],
    ]  # fmt: skip
    assert swept_values(runs)[3] == {"optim.lr": "0.002", "train.seed": "1"}


def test_collect_writes_one_row_per_run_with_status_and_final_metrics(tmp_path):
    runs = []
    for index, lr in enumerate(["0.001", "0.002", "0.003"]):
        run_dir = tmp_path / str(index)
        run_dir.mkdir()
        runs.append({"output_dir": str(run_dir), "overrides": [f"optim.lr={lr}"], "swept": {"optim.lr": lr}})
    (tmp_path / "0" / "final_metrics.json").write_text(json.dumps({"step": 4, "loss": 2.5}))
    (tmp_path / "1" / "PREEMPTED").write_text("2\n")
    write_record(tmp_path, {"runs": runs})
    path, rows = collect(tmp_path)
    with path.open() as handle:
        table = list(csv.DictReader(handle))
    assert path == tmp_path / "results.csv" and len(rows) == 3
    assert [(r["task"], r["optim.lr"], r["status"], r["loss"]) for r in table] == [
        ("0", "0.001", "finished", "2.5"), ("1", "0.002", "preempted", ""), ("2", "0.003", "unfinished", ""),
    ]  # fmt: skip


def test_collect_of_a_single_job_says_it_is_not_a_sweep(tmp_path):
    write_record(tmp_path, {"runs": None, "overrides": []})
    with pytest.raises(OverrideError, match="not a sweep"):
        collect(tmp_path)
