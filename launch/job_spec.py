"""From the command line to a validated job: launcher options, runs, their configs.

Shared by `launch slurm` and `launch local`, so both resolve, validate and lay
out a job the same way before any work starts.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from longctx.launch.job_dir import new_job_dir
from longctx.launch.launcher_config import LauncherConfig, load_launcher_config
from longctx.launch.overrides import split_overrides
from longctx.launch.resolve import output_dir_override, resolve_run_config
from longctx.launch.sweep import expand_sweep, require_no_sweep, swept_values


@dataclasses.dataclass
class JobSpec:
    """A job of one run, or a sweep of several (`multirun`), ready to render or run.

    run_args[i]: the program's arguments of run i (its overrides + train.output_dir).
    """

    launcher: LauncherConfig
    job_dir: Path
    run_dirs: list[Path]
    run_args: list[list[str]]
    run_configs: list[DictConfig]
    swept: list[dict[str, str]]
    multirun: bool

    def record(self, **extra: Any) -> dict[str, Any]:
        """The launch.json content of this job."""
        runs = [
            {"output_dir": str(d), "overrides": a, "swept": s}
            for d, a, s in zip(self.run_dirs, self.run_args, self.swept)
        ]
        return {
            "launcher": dataclasses.asdict(self.launcher),
            "runs": runs if self.multirun else None,
            "overrides": None if self.multirun else self.run_args[0],
            **extra,
        }


def build_job_spec(preset: str, overrides: list[str], multirun: bool, config_dir: str | None) -> JobSpec:
    """Validate everything (launcher options, every run's config) and name the directories."""
    launcher_overrides, run_overrides = split_overrides(overrides)
    launcher = load_launcher_config(preset, launcher_overrides)
    if multirun:
        runs = expand_sweep(run_overrides)
    else:
        require_no_sweep(run_overrides)
        runs = [run_overrides]
    job_dir = new_job_dir(launcher.output_root, launcher.job_name)
    run_dirs = [job_dir / str(i) for i in range(len(runs))] if multirun else [job_dir]
    run_args = [run + [output_dir_override(str(d))] for run, d in zip(runs, run_dirs)]
    run_configs = [resolve_run_config(args, config_dir) for args in run_args]
    return JobSpec(launcher, job_dir, run_dirs, run_args, run_configs, swept_values(runs), multirun)
