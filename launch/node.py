"""One node's share of a job: a torchrun whose rendezvous is watched.

`python -m longctx.launch.node [options] -- <program args>` runs
`torchrun ... -m <module> <program args>` and waits for it. Until the
rendezvous completes (torchrun creates its per-run log directory only when it
starts the workers), a watchdog holds a deadline of `--rdzv-timeout` seconds
plus a short margin: torchrun's own c10d timeouts end most failed rendezvous,
and the watchdog ends the rest (a peer that accepts the connection but never
answers blocks the store client forever). Either way the node prints the
endpoint it tried and exits non-zero, so a job never hangs in its rendezvous.

Per-rank logs: torchrun `--log-dir <log-dir>/<node> --redirects 3 --tee 3` writes
`<log-dir>/<node>/<run id>_*/attempt_0/<local rank>/{stdout,stderr}.log` and
also passes the output through to srun's per-node log.

Signals from SLURM or a terminal reach torchrun and the workers through their
process group; this process outlives them and reports torchrun's exit code.
SIGUSR2 is ignored by torchrun itself (its default action would end the agent)
while the workers install their own handler (the trainer's graceful stop).
"""
from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from longctx.launch.rendezvous import failure_message, torchrun_rendezvous_args

#: seconds after --rdzv-timeout before the watchdog ends a torchrun stuck in its rendezvous
WATCHDOG_MARGIN_S = 10
POLL_S = 0.5


def _parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    if "--" in argv:
        split = argv.index("--")
        argv, program_args = argv[:split], argv[split + 1 :]
    else:
        program_args = []
    parser = argparse.ArgumentParser(prog="python -m longctx.launch.node", description=__doc__.split("\n")[0])
    parser.add_argument("--module", required=True, help="the program: torchrun runs python -m MODULE")
    parser.add_argument("--nproc-per-node", type=int, required=True)
    parser.add_argument("--log-dir", required=True, help="per-rank logs go under LOG_DIR/<node name>/")
    parser.add_argument("--rdzv-timeout", type=int, required=True, help="seconds")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--standalone", action="store_true", help="one node: torchrun --standalone")
    where.add_argument("--rdzv-endpoint", help="host:port of the c10d rendezvous (multi-node)")
    parser.add_argument("--nnodes", type=int, default=1)
    parser.add_argument("--rdzv-id", default="longctx")
    return parser.parse_args(argv), program_args


def node_name() -> str:
    """This node's SLURM name inside a job, else the host name."""
    return os.environ.get("SLURMD_NODENAME") or socket.gethostname()


def torchrun_command(args: argparse.Namespace, log_dir: Path, program_args: list[str]) -> list[str]:
    """`python -m torch.distributed.run ...` for this node."""
    if args.standalone:
        where = ["--standalone"]
    else:
        where = torchrun_rendezvous_args(args.rdzv_endpoint, args.rdzv_id, args.nnodes, args.rdzv_timeout)
    return [
        sys.executable, "-m", "torch.distributed.run", *where,
        f"--nproc-per-node={args.nproc_per_node}",
        f"--log-dir={log_dir}", "--redirects=3", "--tee=3",
        "-m", args.module, *program_args,
    ]  # fmt: skip


def _ignore_usr2() -> None:
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)


def _end(process: subprocess.Popen) -> int:
    process.terminate()
    try:
        return process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()


def run_node(args: argparse.Namespace, program_args: list[str]) -> int:
    """Run torchrun; return its exit code, or 1 when the rendezvous timed out."""
    log_dir = Path(args.log_dir) / node_name()
    log_dir.mkdir(parents=True, exist_ok=True)
    entries_before = set(os.listdir(log_dir))
    endpoint = "standalone (this node)" if args.standalone else args.rdzv_endpoint
    deadline = time.monotonic() + args.rdzv_timeout + WATCHDOG_MARGIN_S
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR2):
        signal.signal(signum, lambda *_: None)  # torchrun gets them through the process group
    print(f"longctx launch: node {node_name()} joins c10d rendezvous at {endpoint} (id {args.rdzv_id}, "
          f"timeout {args.rdzv_timeout} s); rank logs under {log_dir}", file=sys.stderr, flush=True)
    process = subprocess.Popen(torchrun_command(args, log_dir, program_args), preexec_fn=_ignore_usr2)
    while process.poll() is None:
        if set(os.listdir(log_dir)) - entries_before:
            return process.wait()  # workers started: the rendezvous is complete
        if time.monotonic() > deadline:
            _end(process)
            print(failure_message(endpoint, args.rdzv_id, args.rdzv_timeout, node_name(),
                                  "did not complete in time; torchrun was stopped"), file=sys.stderr, flush=True)
            return 1
        time.sleep(POLL_S)
    if process.returncode != 0 and not set(os.listdir(log_dir)) - entries_before:
        detail = f"did not complete: torchrun exited with code {process.returncode} before any worker started"
        print(failure_message(endpoint, args.rdzv_id, args.rdzv_timeout, node_name(), detail),
              file=sys.stderr, flush=True)
    return process.returncode


def main(argv: list[str] | None = None) -> int:
    args, program_args = _parse(list(sys.argv[1:] if argv is None else argv))
    return run_node(args, program_args)


if __name__ == "__main__":
    sys.exit(main())
