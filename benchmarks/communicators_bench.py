"""`longctx bench communicators`: communicators the runtime creates over many planned steps.

For every workload x ranks: plan ``--steps`` consecutive steps of
``tokens_per_rank * ranks`` tokens (documents packed in arrival order, as
`longctx bench scheduler` samples them) with the greedy planner, then count,
per step, the communicators created by the mapping the runtime uses
(`longctx.runtime.process_groups.communicators_created`: every group runs on
the world's communicator) next to what one `new_group` per distinct rank
tuple (the earlier cache) would have created. Greedy, not the MILP: the count
depends on the groups' rank tuples only, and 1,000 MILP steps at 4,096 ranks
would take hours; the greedy plans name more varied tuples than static ones.

Output under ``--out-dir`` (default benchmarks/results/runtime/):
``communicators.json`` (per workload x ranks: steps, created after the first
step, in total, the old design's totals, machine, versions, command) and
``communicators.md`` (the table). Never imports torch beyond what the mapping
module needs.
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from importlib import metadata
from pathlib import Path

from longctx.runtime.process_groups import communicators_created
from longctx.scheduler import Cluster, CostModel, plan_step
from longctx.scheduler.workloads import document_stream, pack_steps

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "runtime"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="longctx bench communicators", description=__doc__.split("\n\n")[0])
    parser.add_argument("--workloads", nargs="+", default=["web", "longmix"])
    parser.add_argument("--ranks", nargs="+", type=int, default=[64, 512, 4096])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--tokens-per-rank", type=int, default=16384)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_OUT)
    return parser


def per_rank_tuple_groups(plans) -> list[int]:
    """What one `new_group` per distinct rank tuple of two or more ranks would create, step by step."""
    seen: set[tuple[int, ...]] = set()
    created = []
    for plan in plans:
        tuples = {tuple(group.ranks) for _, group in plan.groups() if len(group.ranks) > 1}
        created.append(len(tuples - seen))
        seen |= tuples
    return created


def count(workload: str, ranks: int, steps: int, tokens_per_rank: int, seed: int) -> dict:
    """Plan `steps` steps of `workload` on `ranks` ranks and count communicators both ways."""
    cluster, cost_model = Cluster(ranks), CostModel()
    budget = tokens_per_rank * ranks
    longest = min(budget, cost_model.max_tokens_per_rank(cluster) * ranks)
    started = time.perf_counter()
    plans = [plan_step(lengths, cluster, cost_model=cost_model, method="greedy")
             for lengths in pack_steps(document_stream(workload, seed), budget, steps, longest)]
    now, before = communicators_created(plans), per_rank_tuple_groups(plans)
    return {"workload": workload, "ranks": ranks, "steps": len(plans), "tokens_per_step": budget,
            "created_first_step": now[0], "created_after_first_step": sum(now[1:]), "created_total": sum(now),
            "communicators_in_use": 1,
            "per_tuple_design_first_step": before[0], "per_tuple_design_after_first_step": sum(before[1:]),
            "per_tuple_design_total": sum(before), "planning_s": round(time.perf_counter() - started, 1)}


def markdown(rows: list[dict]) -> str:
    lines = ["# Communicators created over planned steps\n\nGreedy plans; counts from "
             "`longctx.runtime.process_groups.communicators_created`, the runtime's mapping; commands in "
             "communicators.json.\n",
             "| workload | ranks | steps | created at step 1 | created after step 1 | in use | "
             "one new_group per tuple: step 1 / after / total |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['workload']} | {r['ranks']} | {r['steps']} | {r['created_first_step']} | "
                     f"{r['created_after_first_step']} | {r['communicators_in_use']} (the world) | "
                     f"{r['per_tuple_design_first_step']} / {r['per_tuple_design_after_first_step']} / "
                     f"{r['per_tuple_design_total']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    """Count, then merge the rows into ``communicators.json`` (rows of other workload x ranks are kept)."""
    args = _parser().parse_args(argv)
    command = "longctx bench communicators " + " ".join(argv)
    rows = [{**count(w, r, args.steps, args.tokens_per_rank, args.seed), "command": command}
            for w in args.workloads for r in args.ranks]
    path = args.out_dir / "communicators.json"
    fresh = {(r["workload"], r["ranks"]) for r in rows}
    kept = [r for r in json.loads(path.read_text())["rows"] if (r["workload"], r["ranks"]) not in fresh] \
        if path.is_file() else []
    rows = sorted(kept + rows, key=lambda r: (r["workload"], r["ranks"]))
    versions = {p: metadata.version(p) for p in ("longctx", "torch", "pulp", "numpy")}
    args.out_dir.mkdir(parents=True, exist_ok=True)
    record = {"machine": {"platform": platform.platform(), "python": platform.python_version()},
              "versions": versions, "rows": rows}
    path.write_text(json.dumps(record, indent=2) + "\n")
    (args.out_dir / "communicators.md").write_text(markdown(rows))
    print(markdown(rows))
    return 0
