"""One output directory per job, and what launch writes into it.

Layout of a job directory (a sweep's directory holds one run directory per
array task, `0/`, `1/`, ...; a single job's directory is its run directory):

    job.sbatch          the rendered script (resubmit with `sbatch job.sbatch`)
    launch.json         launcher options, overrides, job id(s), submit time
    git.txt             commit and dirty state of the working tree at submission
    pip-freeze.txt      the submitting environment's packages
    <run>/config.yaml   the resolved run config (the trainer writes the same file)
    <run>/logs/         slurm-<job>.out (batch log) and ranks-<job>-restart<n>/<node>/... (per rank)
    <run>/checkpoints/, metrics.jsonl, wandb/, final_metrics.json, STOP, PREEMPTED   (the trainer's)
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

RECORD_NAME = "launch.json"


class JobDirError(ValueError):
    """A path given as a job directory is not one."""


def new_job_dir(output_root: str, job_name: str) -> Path:
    """A fresh absolute path `<output_root>/<job_name>-<UTC time>-<random>` (not created);
    the job name is reduced to at most 40 file-name-safe characters."""
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M%S")
    safe_name = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in job_name)[:40]
    return Path(output_root).resolve() / f"{safe_name}-{stamp}-{secrets.token_hex(2)}"


def _command_output(command: list[str], cwd: Path) -> str:
    try:
        done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unavailable: {exc}\n"
    return done.stdout if done.returncode == 0 else f"unavailable: {done.stderr.strip()}\n"


def git_state(workdir: Path) -> str:
    """`commit <sha>` and `dirty: yes|no` of the checkout at `workdir`."""
    commit = _command_output(["git", "rev-parse", "HEAD"], workdir).strip()
    if commit.startswith("unavailable"):
        return f"commit {commit}\n"
    dirty = _command_output(["git", "status", "--porcelain", "--untracked-files=no"], workdir).strip()
    return f"commit {commit}\ndirty: {'yes' if dirty else 'no'}\n"


@dataclasses.dataclass
class JobDirContents:
    """What `write_job_dir` puts into a job directory."""

    job_dir: Path
    script: str
    run_dirs: list[Path]
    run_configs: list[DictConfig]
    record: dict[str, Any]


def write_job_dir(contents: JobDirContents, script_name: str, workdir: Path) -> Path:
    """Create the job directory and its run directories; return the script's path."""
    contents.job_dir.mkdir(parents=True, exist_ok=False)
    for run_dir, config in zip(contents.run_dirs, contents.run_configs):
        (run_dir / "logs").mkdir(parents=True, exist_ok=True)
        OmegaConf.save(config, run_dir / "config.yaml")
    script_path = contents.job_dir / script_name
    script_path.write_text(contents.script)
    script_path.chmod(0o755)
    (contents.job_dir / "git.txt").write_text(git_state(workdir))
    (contents.job_dir / "pip-freeze.txt").write_text(_command_output([sys.executable, "-m", "pip", "freeze"], workdir))
    write_record(contents.job_dir, contents.record)
    return script_path


def write_record(job_dir: Path, record: dict[str, Any]) -> None:
    (job_dir / RECORD_NAME).write_text(json.dumps(record, indent=2) + "\n")


def read_record(job_dir: Path) -> dict[str, Any]:
    """The `launch.json` of a job directory (raises JobDirError when absent)."""
    path = Path(job_dir) / RECORD_NAME
    if not path.is_file():
        raise JobDirError(f"{job_dir} is not a longctx job directory: {RECORD_NAME} is missing")
    return json.loads(path.read_text())


def update_record(job_dir: Path, **fields: Any) -> dict[str, Any]:
    record = read_record(job_dir)
    record.update(fields)
    write_record(job_dir, record)
    return record
