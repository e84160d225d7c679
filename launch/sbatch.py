"""Render a readable sbatch script for a job (or a job array, one task per sweep point).

The script, top to bottom: #SBATCH options; the run's output directory and
overrides (picked by SLURM_ARRAY_TASK_ID in a sweep); extra environment; the
rendezvous endpoint; the preemption trap; one `srun` task per node running
`python -m longctx.launch.node` (torchrun with c10d rendezvous); the requeue
decision. Every value that comes from a config is shell-quoted.
"""
from __future__ import annotations

import dataclasses
import datetime
import sys
from pathlib import Path

from longctx.launch import preemption, rendezvous
from longctx.launch.launcher_config import LauncherConfig
from longctx.launch.shell import bash_array, comment, directive, quote, require_single_line

SCRIPT_NAME = "job.sbatch"


@dataclasses.dataclass
class SbatchJob:
    """Everything the script needs.

    `task_dirs[i]` and `task_args[i]` are the output directory and the program's
    arguments (Hydra overrides) of array task i; one task without `array` is a plain job.
    """

    launcher: LauncherConfig
    job_dir: Path
    task_dirs: list[Path]
    task_args: list[list[str]]
    workdir: Path
    array: bool = False

    def __post_init__(self) -> None:
        if len(self.task_dirs) != len(self.task_args) or not self.task_dirs:
            raise ValueError(
                f"SbatchJob needs one output directory per task: {len(self.task_dirs)} directories, "
                f"{len(self.task_args)} argument lists"
            )
        if len(self.task_dirs) > 1 and not self.array:
            raise ValueError(f"{len(self.task_dirs)} tasks need array=True (a SLURM job array)")
        require_single_line("working directory", self.workdir)
        require_single_line("job directory", self.job_dir)
        for task_dir in self.task_dirs:
            require_single_line("run output directory", task_dir)

    @property
    def slurm_output(self) -> str:
        """sbatch's --output pattern: the batch log inside each run's logs/ directory."""
        if self.array:
            return f"{self.job_dir}/%a/logs/slurm-%A_%a.out"
        return f"{self.task_dirs[0]}/logs/slurm-%j.out"


def _directives(job: SbatchJob) -> list[str]:
    cfg = job.launcher
    lines = [
        directive("job-name", cfg.job_name),
        directive("nodes", cfg.nodes),
        directive("ntasks-per-node", 1),
    ]
    optional = {
        "cpus-per-task": cfg.cpus_per_task,
        "gpus-per-node": cfg.gpus_per_node or None,
        "mem": cfg.mem,
        "partition": cfg.partition,
        "account": cfg.account,
        "qos": cfg.qos,
        "time": cfg.time,
        "constraint": cfg.constraint,
    }
    lines += [directive(option, value) for option, value in optional.items() if value is not None]
    lines += [
        directive("chdir", job.workdir),
        directive("output", job.slurm_output),
        directive("open-mode", "append"),
        directive("signal", preemption.signal_directive(cfg.grace_seconds)),
        directive("requeue" if cfg.requeue else "no-requeue"),
        directive("comment", job.job_dir),
    ]
    if job.array:
        lines.append(directive("array", f"0-{len(job.task_dirs) - 1}"))
    return lines


def _run_selection(job: SbatchJob) -> list[str]:
    if not job.array:
        return [f"OUTPUT_DIR={quote(job.task_dirs[0])}", bash_array("RUN_ARGS", job.task_args[0])]
    lines = ['case "$SLURM_ARRAY_TASK_ID" in']
    for index, (task_dir, args) in enumerate(zip(job.task_dirs, job.task_args)):
        lines.append(f"  {index}) OUTPUT_DIR={quote(task_dir)}; {bash_array('RUN_ARGS', args)} ;;")
    lines += ['  *) echo "longctx launch: no array task $SLURM_ARRAY_TASK_ID in this sweep" >&2; exit 2 ;;', "esac"]
    return lines


def _step_command(job: SbatchJob) -> list[str]:
    """The srun line (one task per node) running the per-node torchrun wrapper, backgrounded."""
    cfg = job.launcher
    container = cfg.container
    python = cfg.python or ("python" if container.runtime else sys.executable)
    groups = [['srun --nodes="$SLURM_JOB_NUM_NODES" --ntasks-per-node=1 --kill-on-bad-exit=1 --label']]
    if container.runtime == "pyxis":
        groups.append([f"--container-image={quote(container.image)}"])
        if container.mounts:
            groups[-1].append(f"--container-mounts={quote(','.join(container.mounts))}")
    elif container.runtime == "apptainer":
        groups.append(["apptainer exec"] + (["--nv"] if cfg.gpus_per_node else []))
        if container.mounts:
            groups[-1].append(f"--bind={quote(','.join(container.mounts))}")
        groups[-1].append(quote(container.image))
    groups += [
        [quote(python), "-m longctx.launch.node", f"--module={quote(cfg.module)}"],
        [f"--nnodes={quote(cfg.nodes)}", f"--nproc-per-node={quote(cfg.procs_per_node)}"],
        ['--rdzv-endpoint="$RDZV_HOST:$RDZV_PORT"', '--rdzv-id="$SLURM_JOB_ID"', f"--rdzv-timeout={quote(cfg.rdzv_timeout)}"],
        ['--log-dir="$OUTPUT_DIR/logs/ranks-$SLURM_JOB_ID-restart${SLURM_RESTART_COUNT:-0}"'],
        ["--", *(quote(a) for a in cfg.args), '"${RUN_ARGS[@]}" &'],
    ]
    return [" \\\n  ".join(" ".join(group) for group in groups)]


def render_sbatch(job: SbatchJob) -> str:
    """The full script text."""
    cfg = job.launcher
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    kind = f"a job array of {len(job.task_dirs)} runs" if job.array else "one run"
    lines = [
        "#!/bin/bash",
        f"# longctx job ({kind}), rendered by `longctx launch slurm` at {stamp}.",
        comment("Job directory: {job_dir}  (resubmit: sbatch {script})", job_dir=job.job_dir,
                script=job.job_dir / SCRIPT_NAME),
        *_directives(job),
        "",
        "set -uo pipefail",
        "",
        "# --- this run: its output directory and the program's Hydra overrides",
        *_run_selection(job),
        'mkdir -p "$OUTPUT_DIR/logs"',
        "",
        "# --- preemption: USR2 (time limit or `scancel --signal=USR2 --batch`) -> STOP file ->",
        "#     the trainer checkpoints, writes PREEMPTED and exits -> this script requeues the job",
        *preemption.trap_lines(),
        'echo "longctx launch: job $SLURM_JOB_ID (restart ${SLURM_RESTART_COUNT:-0}) on $SLURM_JOB_NODELIST;'
        ' output $OUTPUT_DIR"',
    ]
    if cfg.env:
        lines += ["", "# --- extra environment (launcher.env)"]
        lines += [f"export {name}={quote(value)}" for name, value in cfg.env.items()]
    lines += [
        "",
        "# --- rendezvous: c10d at the first node of the allocation (its NodeAddr), port from the job id",
        *rendezvous.endpoint_shell_lines(cfg.rdzv_port),
        'echo "longctx launch: rendezvous at $RDZV_HOST:$RDZV_PORT (node $RDZV_NODE)"',
        "",
        "# --- one task per node: torchrun (c10d rendezvous, rank logs under $OUTPUT_DIR/logs/ranks-*)",
        *_step_command(job),
        *preemption.wait_lines(),
        "",
        *preemption.requeue_lines(cfg.requeue),
    ]
    return "\n".join(lines) + "\n"
