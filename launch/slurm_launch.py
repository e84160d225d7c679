"""`longctx launch slurm`: render, write the job directory, submit."""
from __future__ import annotations

import datetime
import sys
from pathlib import Path

from longctx.launch import slurm_commands
from longctx.launch.job_dir import JobDirContents, update_record, write_job_dir
from longctx.launch.job_spec import JobSpec, build_job_spec
from longctx.launch.sbatch import SCRIPT_NAME, SbatchJob, render_sbatch


def sbatch_job(spec: JobSpec, workdir: Path) -> SbatchJob:
    return SbatchJob(spec.launcher, spec.job_dir, spec.run_dirs, spec.run_args, workdir, array=spec.multirun)


def launch_slurm(overrides: list[str], multirun: bool, dry_run: bool, config_dir: str | None) -> int:
    """Print the script (dry run) or submit it; print the job id and the job directory."""
    spec = build_job_spec("slurm", overrides, multirun, config_dir)
    workdir = Path.cwd()
    script = render_sbatch(sbatch_job(spec, workdir))
    if dry_run:
        sys.stdout.write(script)
        return 0
    contents = JobDirContents(spec.job_dir, script, spec.run_dirs, spec.run_configs, spec.record())
    script_path = write_job_dir(contents, SCRIPT_NAME, workdir)
    job_id = slurm_commands.submit(str(script_path))
    submitted = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    update_record(spec.job_dir, job_id=job_id, submitted_at=submitted)
    print(f"submitted job {job_id}")
    print(f"job directory: {spec.job_dir}")
    return 0
