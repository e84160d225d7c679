"""`longctx launch slurm|local|status|logs|cancel|collect ...`.

    longctx launch slurm [--dry-run] [-m] [overrides...]   render + submit an sbatch job (array with -m)
    longctx launch local [--dry-run] [-m] [overrides...]   the same entry point via torchrun --standalone
    longctx launch status  <job id | job dir>
    longctx launch logs    <job id | job dir> [--ranks] [--tail N]
    longctx launch cancel  <job id | job dir> [--graceful]
    longctx launch collect <sweep dir> [--output results.csv]

Overrides are Hydra's: `launcher.<field>=<value>` set the launcher's options
(configs/launcher/slurm.yaml, local.yaml); all others configure the run.
"""
from __future__ import annotations

import argparse
import sys

from longctx.launch import jobs
from longctx.launch.job_dir import JobDirError
from longctx.launch.launcher_config import LauncherConfigError
from longctx.launch.overrides import OverrideError
from longctx.launch.resolve import ConfigResolutionError
from longctx.launch.slurm_commands import SlurmError

_USER_ERRORS = (LauncherConfigError, OverrideError, ConfigResolutionError, JobDirError, SlurmError, ValueError)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="longctx launch", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for name, help_ in (("slurm", "submit an sbatch job"), ("local", "run on this machine (torchrun --standalone)")):
        launch = commands.add_parser(name, help=help_)
        launch.add_argument("--dry-run", action="store_true", help="print the script and exit")
        launch.add_argument("-m", "--multirun", action="store_true", help="sweep: one run per combination")
        launch.add_argument("--config-dir", help="compose the run config from this Hydra tree (default: packaged)")
        launch.add_argument("overrides", nargs="*", help="Hydra overrides (launcher.<field>=... for the launcher)")
    for name, help_ in (("status", "state of a job"), ("logs", "print a job's logs"), ("cancel", "cancel a job")):
        command = commands.add_parser(name, help=help_)
        command.add_argument("target", help="SLURM job id or job directory")
    commands.choices["logs"].add_argument("--ranks", action="store_true", help="also every rank's stdout/stderr")
    commands.choices["logs"].add_argument("--tail", type=int, help="only the last N lines of each log")
    commands.choices["cancel"].add_argument(
        "--graceful", action="store_true", help="checkpoint and stop at the end of the step (STOP file), no requeue"
    )
    collect = commands.add_parser("collect", help="roll a sweep's final metrics into one CSV")
    collect.add_argument("sweep_dir")
    collect.add_argument("--output", help="CSV path (default: <sweep dir>/results.csv)")
    return parser


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "slurm":
        from longctx.launch.slurm_launch import launch_slurm

        return launch_slurm(args.overrides, args.multirun, args.dry_run, args.config_dir)
    if args.command == "local":
        from longctx.launch.local import launch_local

        return launch_local(args.overrides, args.multirun, args.dry_run, args.config_dir)
    if args.command == "status":
        print("\n".join(jobs.status_lines(args.target)))
    elif args.command == "logs":
        print(jobs.show_logs(args.target, args.ranks, args.tail))
    elif args.command == "cancel":
        print(jobs.cancel_job(args.target, args.graceful))
    elif args.command == "collect":
        from longctx.launch.sweep import collect

        path, rows = collect(args.sweep_dir, args.output)
        print(f"wrote {len(rows)} runs to {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        return _dispatch(args)
    except _USER_ERRORS as exc:
        print(f"longctx launch {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
