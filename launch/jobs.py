"""`longctx launch status|logs|cancel <job id or job directory>`."""
from __future__ import annotations

import json
import re
from pathlib import Path

from longctx.launch import slurm_commands
from longctx.launch.job_dir import JobDirError, read_record
from longctx.launch.preemption import PREEMPTED_FILE, STOP_FILE
from longctx.launch.sweep import FINAL_METRICS

_JOB_ID = re.compile(r"^\d+(_\d+)?$")


def resolve_target(target: str) -> tuple[Path | None, str | None]:
    """`(job directory, job id)` of a job id or a job (or run) directory."""
    path = Path(target)
    if path.is_dir():
        for candidate in (path, path.parent):
            try:
                return candidate.resolve(), read_record(candidate).get("job_id")
            except JobDirError:
                continue
        raise JobDirError(f"{target} is neither a job directory nor a run directory of a sweep (no launch.json)")
    if _JOB_ID.match(target):
        comment = slurm_commands.job_comment(target)
        return (Path(comment) if comment else None), target
    raise JobDirError(f"{target!r} is neither an existing job directory nor a SLURM job id")


def run_dirs(job_dir: Path) -> list[Path]:
    """The run directories of a job: itself, or a sweep's `<i>/` directories."""
    record = read_record(job_dir)
    return [Path(run["output_dir"]) for run in record["runs"]] if record.get("runs") else [job_dir]


def run_progress(run_dir: Path) -> str:
    """One line on a run's state as its files tell it."""
    if (run_dir / FINAL_METRICS).is_file():
        return f"finished: {json.loads((run_dir / FINAL_METRICS).read_text())}"
    if (run_dir / PREEMPTED_FILE).is_file():
        return f"preempted after step {(run_dir / PREEMPTED_FILE).read_text().strip()}"
    steps = sorted(int(p.name.split("_")[1]) for p in (run_dir / "checkpoints").glob("step_*") if p.name[5:].isdigit())
    return f"not finished; latest checkpoint: step {steps[-1]}" if steps else "not finished; no checkpoint yet"


def status_lines(target: str) -> list[str]:
    job_dir, job_id = resolve_target(target)
    lines = []
    if job_id:
        rows = slurm_commands.queue_rows(job_id)
        if rows:
            lines += [f"job {r['job']}: {r['state']} for {r['elapsed']} ({r['nodes_or_reason']})" for r in rows]
        else:
            state = slurm_commands.controller_state(job_id)
            lines.append(f"job {job_id}: {state}" if state else f"job {job_id}: no longer known to SLURM")
    if job_dir is None:
        lines.append("job directory unknown (SLURM forgot the job); pass the job directory instead")
        return lines
    lines.append(f"job directory: {job_dir}")
    lines += [f"  {d.name if d != job_dir else 'run'}: {run_progress(d)}" for d in run_dirs(job_dir)]
    return lines


def log_files(job_dir: Path, ranks: bool) -> list[Path]:
    """Batch logs (`logs/slurm-*.out`, `logs/local.out`) and, with `ranks`, every rank's stdout/stderr."""
    files: list[Path] = []
    for run_dir in run_dirs(job_dir):
        files += sorted((run_dir / "logs").glob("*.out"))
        if ranks:
            files += sorted((run_dir / "logs").glob("ranks-*/*/*/attempt_*/*/std*.log"))
    return files


def show_logs(target: str, ranks: bool, tail: int | None) -> str:
    job_dir, job_id = resolve_target(target)
    if job_dir is None:
        raise JobDirError(f"SLURM no longer knows job {job_id}; pass its job directory instead")
    parts = []
    for path in log_files(job_dir, ranks):
        lines = path.read_text(errors="replace").splitlines()
        parts.append(f"==> {path} <==\n" + "\n".join(lines[-tail:] if tail else lines))
    return "\n".join(parts) if parts else f"no logs yet under {job_dir}"


def cancel_job(target: str, graceful: bool) -> str:
    """Cancel now (scancel), or gracefully: STOP files make the trainer checkpoint and exit, no requeue."""
    job_dir, job_id = resolve_target(target)
    if graceful:
        if job_dir is None:
            raise JobDirError(f"SLURM no longer knows job {job_id}; pass its job directory instead")
        for run_dir in run_dirs(job_dir):
            (run_dir / STOP_FILE).touch()
        return f"asked every run of {job_dir} to checkpoint and stop (created {STOP_FILE} files)"
    if not job_id:
        raise JobDirError(f"{job_dir} was launched locally; stop it with Ctrl-C or use --graceful")
    slurm_commands.cancel(job_id)
    return f"cancelled job {job_id}"
