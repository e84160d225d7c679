"""Sweeps: `-m` multirun overrides expand to runs (a SLURM job array); `collect` rolls
the runs' `final_metrics.json` into one CSV.

Expansion follows Hydra's basic sweeper: the Cartesian product of every sweep
override (`optim.lr=1e-3,2e-3`, `range(...)`, `choice(...)`), in the order given,
the last override varying fastest; plain overrides apply to every run.
"""
from __future__ import annotations

import csv
import itertools
import json
from pathlib import Path
from typing import Any

from longctx.launch.job_dir import read_record
from longctx.launch.overrides import OverrideError, parse

FINAL_METRICS = "final_metrics.json"
RESULTS_CSV = "results.csv"


def expand_sweep(overrides: list[str]) -> list[list[str]]:
    """One override list per run: the product of the sweep overrides' values."""
    choices: list[list[str]] = []
    for text in overrides:
        override = parse(text)
        if override.is_sweep_override():
            key = override.get_key_element()
            choices.append([f"{key}={value}" for value in override.sweep_string_iterator()])
        else:
            choices.append([text])
    return [list(run) for run in itertools.product(*choices)]


def swept_values(runs: list[list[str]]) -> list[dict[str, str]]:
    """Per run, the `key: value` of the overrides that differ between runs."""
    varying = {i for i in range(len(runs[0])) if len({run[i] for run in runs}) > 1} if runs else set()
    return [dict(run[i].split("=", 1) for i in sorted(varying)) for run in runs]


def require_no_sweep(overrides: list[str]) -> None:
    """Raise when a sweep override is used without -m."""
    for text in overrides:
        if parse(text).is_sweep_override():
            raise OverrideError(f"{text!r} is a sweep (several values); add -m to launch one run per value")


def _run_status(run_dir: Path) -> tuple[str, dict[str, Any]]:
    metrics_path = run_dir / FINAL_METRICS
    if metrics_path.is_file():
        return "finished", json.loads(metrics_path.read_text())
    if (run_dir / "PREEMPTED").is_file():
        return "preempted", {}
    return "unfinished", {}


def collect(sweep_dir: Path, output: Path | None = None) -> tuple[Path, list[dict[str, Any]]]:
    """Write `<sweep_dir>/results.csv` (or `output`): one row per run with its swept
    values, status and final metrics. Returns the path and the rows."""
    sweep_dir = Path(sweep_dir)
    record = read_record(sweep_dir)
    runs = record.get("runs")
    if not runs:
        raise OverrideError(f"{sweep_dir} is a single job, not a sweep (launch.json lists no runs)")
    rows: list[dict[str, Any]] = []
    for index, run in enumerate(runs):
        status, metrics = _run_status(Path(run["output_dir"]))
        rows.append({"task": index, **run["swept"], "status": status, **metrics, "output_dir": run["output_dir"]})
    columns: list[str] = []
    for row in rows:
        columns += [key for key in row if key not in columns]
    path = Path(output) if output else sweep_dir / RESULTS_CSV
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return path, rows
