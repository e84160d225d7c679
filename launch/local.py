"""`longctx launch local`: the same entry point as a SLURM job, on this machine.

Renders a small bash script (`--dry-run` prints it) that runs each run of the
job with `torchrun --standalone` through `python -m longctx.launch.node`, the
output teed into `<run>/logs/local.out`, then runs it.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from longctx.launch.job_dir import JobDirContents, write_job_dir
from longctx.launch.job_spec import JobSpec, build_job_spec
from longctx.launch.shell import comment, quote, require_single_line

SCRIPT_NAME = "run_local.sh"


def render_local_script(spec: JobSpec, workdir: Path) -> str:
    cfg = spec.launcher
    require_single_line("working directory", workdir)
    lines = [
        "#!/bin/bash",
        f"# longctx local job ({len(spec.run_dirs)} run(s)), rendered by `longctx launch local`.",
        comment("Job directory: {job_dir}", job_dir=spec.job_dir),
        "set -uo pipefail",
        f"cd {quote(workdir)}",
        *(f"export {name}={quote(value)}" for name, value in cfg.env.items()),
        "RC=0",
    ]
    for run_dir, args in zip(spec.run_dirs, spec.run_args):
        groups = [
            [quote(cfg.python or sys.executable), "-m longctx.launch.node --standalone", f"--module={quote(cfg.module)}"],
            [f"--nproc-per-node={quote(cfg.procs_per_node)}", f"--rdzv-timeout={quote(cfg.rdzv_timeout)}"],
            [f"--log-dir={quote(run_dir / 'logs' / 'ranks-local')}"],
            ["--", *(quote(a) for a in cfg.args), *(quote(a) for a in args)],
        ]
        lines += [
            f"mkdir -p {quote(run_dir / 'logs')}",
            " \\\n  ".join(" ".join(g) for g in groups) + f" 2>&1 | tee -a {quote(run_dir / 'logs' / 'local.out')}",
            'STEP_RC=${PIPESTATUS[0]}; [ "$STEP_RC" = 0 ] || RC=$STEP_RC',
        ]
    lines.append('exit "$RC"')
    return "\n".join(lines) + "\n"


def launch_local(overrides: list[str], multirun: bool, dry_run: bool, config_dir: str | None) -> int:
    """Print the script (dry run) or write the job directory and run every run in turn."""
    spec = build_job_spec("local", overrides, multirun, config_dir)
    if spec.launcher.nodes != 1:
        raise ValueError(f"launcher.nodes={spec.launcher.nodes}: a local launch runs on one node; set launcher.nodes=1")
    workdir = Path.cwd()
    script = render_local_script(spec, workdir)
    if dry_run:
        sys.stdout.write(script)
        return 0
    contents = JobDirContents(spec.job_dir, script, spec.run_dirs, spec.run_configs, spec.record(job_id=None))
    script_path = write_job_dir(contents, SCRIPT_NAME, workdir)
    print(f"job directory: {spec.job_dir}", flush=True)
    return subprocess.run(["bash", str(script_path)]).returncode
