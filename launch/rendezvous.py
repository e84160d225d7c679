"""The c10d rendezvous of a SLURM job: host, port, and torchrun's arguments.

Every node runs one torchrun; they meet at the first node of the allocation
(`scontrol show hostnames $SLURM_JOB_NODELIST | head -1`). Its address is that
node's `NodeAddr` as SLURM knows it (node names need not resolve as host names),
and the port is derived from the job id, so two jobs sharing a node do not
collide and a requeued job finds the same port again.
"""
from __future__ import annotations

import shlex

PORT_BASE = 15000
PORT_SPAN = 15000


def port_for_job(job_id: int) -> int:
    """The rendezvous TCP port of a job: 15000 + job_id % 15000 (15000..29999)."""
    return PORT_BASE + job_id % PORT_SPAN


def endpoint_shell_lines(fixed_port: int | None) -> list[str]:
    """Bash lines, run in the batch shell, that set RDZV_HOST and RDZV_PORT."""
    port = (
        shlex.quote(str(fixed_port))
        if fixed_port is not None
        else f"$(( {PORT_BASE} + SLURM_JOB_ID % {PORT_SPAN} ))"
    )
    return [
        'RDZV_NODE=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)',
        "RDZV_HOST=$(scontrol show node \"$RDZV_NODE\" -o | tr ' ' '\\n' | sed -n 's/^NodeAddr=//p')",
        'RDZV_HOST=${RDZV_HOST:-$RDZV_NODE}',
        f"RDZV_PORT={port}",
    ]


def torchrun_rendezvous_args(endpoint: str, run_id: str, nnodes: int, timeout_s: int) -> list[str]:
    """torchrun arguments for a c10d rendezvous of `nnodes` nodes at `endpoint` (host:port).

    `join_timeout` bounds the wait for all nodes; `read_timeout` bounds each store
    operation (connecting to an unreachable host included).
    """
    return [
        f"--nnodes={nnodes}",
        "--rdzv-backend=c10d",
        f"--rdzv-endpoint={endpoint}",
        f"--rdzv-id={run_id}",
        f"--rdzv-conf=join_timeout={timeout_s},read_timeout={timeout_s}",
        "--max-restarts=0",
    ]


def failure_message(endpoint: str, run_id: str, timeout_s: int, node: str, detail: str) -> str:
    """What a node prints when the rendezvous did not complete."""
    return (
        f"longctx launch: RENDEZVOUS FAILED on node {node}: c10d rendezvous at {endpoint} "
        f"(id {run_id}) {detail} (timeout {timeout_s} s). Check that the first node of the "
        f"job started its torchrun, that port {endpoint.rsplit(':', 1)[-1]} is free on it and reachable "
        "from every node, and that launcher.nodes matches the allocation."
    )
