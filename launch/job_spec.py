"""From the command line to a validated job: launcher options, runs, their configs.

Shared by `launch slurm` and `launch local`, so both resolve, validate and lay
out a job the same way before any work starts.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from longctx.launch.job_dir import new_job_dir
from longctx.launch.launcher_config import LauncherConfig, LauncherConfigError, load_launcher_config
from longctx.launch.overrides import parse, split_overrides
from longctx.launch.program_checks import check_program_arguments
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


#: the run config's world-size key (the trainer spawns this many ranks when not under torchrun)
WORLD_SIZE_KEY = "parallel.nprocs"


def with_world_size(run: list[str], launcher: LauncherConfig) -> list[str]:
    """`run` plus `parallel.nprocs=<nodes x procs_per_node>`, so the run config states the world it
    runs in; a different `parallel.nprocs` given by the user is an error."""
    given = [o for o in run if not parse(o).is_sweep_override() and parse(o).get_key_element() == WORLD_SIZE_KEY]
    for text in given:
        if parse(text).value() != launcher.world_size:
            raise LauncherConfigError(
                f"{text!r} disagrees with the launch: launcher.nodes={launcher.nodes} x "
                f"launcher.procs_per_node={launcher.procs_per_node} = {launcher.world_size} ranks; "
                f"drop {WORLD_SIZE_KEY} (the launcher sets it) or make them agree"
            )
    return run if given else run + [f"{WORLD_SIZE_KEY}={launcher.world_size}"]


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
    if all(OmegaConf.select(config, WORLD_SIZE_KEY) is not None for config in run_configs):
        run_args = [with_world_size(args, launcher) for args in run_args]
        run_configs = [resolve_run_config(args, config_dir) for args in run_args]
    check_program_arguments(launcher, run_args, config_dir)
    return JobSpec(launcher, job_dir, run_dirs, run_args, run_configs, swept_values(runs), multirun)
