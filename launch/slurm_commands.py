"""Thin wrappers over SLURM's client commands, each bounded by a timeout."""
from __future__ import annotations

import shutil
import subprocess

COMMAND_TIMEOUT_S = 60


class SlurmError(RuntimeError):
    """A SLURM command failed or is not installed; the message carries its stderr."""


def run_slurm(command: list[str]) -> str:
    """stdout of a SLURM command (raises SlurmError with its stderr on failure)."""
    if shutil.which(command[0]) is None:
        raise SlurmError(f"`{command[0]}` is not installed or not on PATH; run this on a SLURM login node")
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        raise SlurmError(f"`{' '.join(command)}` did not answer within {COMMAND_TIMEOUT_S} s") from exc
    if done.returncode != 0:
        raise SlurmError(f"`{' '.join(command)}` failed (exit {done.returncode}): {done.stderr.strip()}")
    return done.stdout


def submit(script_path: str) -> str:
    """Submit a batch script; return the job id."""
    return run_slurm(["sbatch", "--parsable", script_path]).strip().split(";")[0]


def queue_rows(job_id: str) -> list[dict[str, str]]:
    """squeue's view of a job (all array tasks): id, state, elapsed time, reason or nodes."""
    fields = ("job", "state", "elapsed", "nodes_or_reason")
    try:
        out = run_slurm(["squeue", "-h", "-j", job_id, "-o", "%i|%T|%M|%R"])
    except SlurmError:
        return []  # squeue errors for ids it no longer knows
    return [dict(zip(fields, line.split("|", 3))) for line in out.splitlines() if line.strip()]


def controller_state(job_id: str) -> str | None:
    """JobState from `scontrol show job` (known for a while after the end), else None."""
    try:
        out = run_slurm(["scontrol", "show", "job", job_id, "-o"])
    except SlurmError:
        return None
    states = [word.split("=", 1)[1] for word in out.split() if word.startswith("JobState=")]
    return ",".join(states) or None


def job_comment(job_id: str) -> str | None:
    """The job's comment (launch stores the job directory there), while the controller knows the job."""
    try:
        out = run_slurm(["scontrol", "show", "job", job_id])
    except SlurmError:
        return None
    for line in out.splitlines():  # the comment has a line of its own; it may contain spaces
        if line.strip().startswith("Comment="):
            comment = line.strip().removeprefix("Comment=")
            return None if comment == "(null)" else comment
    return None


def cancel(job_id: str) -> None:
    run_slurm(["scancel", job_id])
