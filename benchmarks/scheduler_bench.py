"""`longctx bench scheduler`: planner vs baselines vs the lower bound, on sampled steps.

For every workload x ranks x step: sample one step of `tokens_per_rank * ranks`
tokens (documents packed in arrival order, none longer than the cluster holds),
then time with the one simulator (ms): the longctx planner (`plan_step`, MILP
+ greedy candidates, and greedy only), static DP x CP in arrival order and
balanced (best CP size of each), FlexSP-style (power-of-two Ulysses groups via
the MILP) and ByteScale-style (greedy over ring groups of any size).

Output under ``--out-dir`` (default benchmarks/results/scheduler/):
``scheduler_<tag>.json`` with one record per (workload, ranks, method, step):
workload, ranks, tokens_per_step, method, step, step_time_ms, lower_bound_ms,
solve_time_s, detail, load_average_1m (the machine is shared: solve times
grow with its load), commit, versions (and a header naming the machine and
command); ``scheduler_<tag>.md`` with the summary table (medians over steps);
``scheduler_<tag>.png`` with speedup over static and gap to the bound.
``--quick`` runs a small sweep (8 and 64 ranks, one step) in well under two
minutes. Never imports torch.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

from longctx.scheduler import Cluster, CostModel, best_static_plan, bytescale_plan, flexsp_plan, plan_step
from longctx.scheduler.lower_bound import lower_bound_ms
from longctx.scheduler.workloads import SAMPLERS, document_stream, pack_steps

RANKS = (8, 64, 512, 4096, 16384)
QUICK_RANKS = (8, 64)
METHODS = ("longctx", "longctx-greedy", "static-arrival", "static-balanced", "flexsp", "bytescale")
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "scheduler"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="longctx bench scheduler", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small sweep: 8 and 64 ranks, one step")
    p.add_argument("--ranks", type=int, nargs="+", help=f"rank counts (default {RANKS})")
    p.add_argument("--workloads", nargs="+", choices=sorted(SAMPLERS), default=sorted(SAMPLERS))
    p.add_argument("--steps", type=int, help="steps per (workload, ranks); default 3 (1 with --quick)")
    p.add_argument("--tokens-per-rank", type=int, default=16384)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out-dir", type=Path, default=DEFAULT_OUT)
    p.add_argument("--tag", help="file name tag (default quick|full)")
    return p


def time_limit_s(ranks: int) -> float:
    """MILP time limit: 1 s up to 512 ranks, 3 s beyond (the planner's own budget is 5 s)."""
    return 1.0 if ranks <= 512 else 3.0


def run_methods(lengths: list[int], cluster: Cluster, cost_model: CostModel) -> list[dict]:
    """Every method on one step: dicts with method, step_time_ms, solve_time_s, detail."""
    started = time.perf_counter()
    bound = lower_bound_ms(lengths, cluster, cost_model)
    bound_s = time.perf_counter() - started
    limit = time_limit_s(cluster.num_ranks)
    runs = {
        "longctx": lambda: plan_step(lengths, cluster, cost_model=cost_model, time_limit_s=limit),
        "longctx-greedy": lambda: plan_step(lengths, cluster, cost_model=cost_model, method="greedy"),
        "static-arrival": lambda: best_static_plan(lengths, cluster, order="arrival", cost_model=cost_model,
                                                   lower_bound=bound),
        "static-balanced": lambda: best_static_plan(lengths, cluster, order="balanced", cost_model=cost_model,
                                                    lower_bound=bound),
        "flexsp": lambda: flexsp_plan(lengths, cluster, cost_model, bound, time_limit_s=limit),
        "bytescale": lambda: bytescale_plan(lengths, cluster, cost_model, bound),
    }
    out = []
    for method, run in runs.items():
        plan = run()
        solve = plan.solve_time_s + (bound_s if method not in ("longctx", "longctx-greedy") else 0.0)
        out.append({"method": method, "step_time_ms": plan.predicted_step_time_ms, "lower_bound_ms": bound,
                    "solve_time_s": solve, "detail": f"{plan.method}; " + " | ".join(plan.notes)})
    return out


def provenance(argv: list[str]) -> dict:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10,
                                cwd=Path(__file__).resolve().parent).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = "unknown"
    versions = {"python": platform.python_version()}
    for package in ("longctx", "pulp", "highspy", "numpy"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "missing"
    machine = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
               "cpus": os.cpu_count(), "load_average_1m": os.getloadavg()[0]}
    return {"commit": commit or "unknown", "versions": versions, "machine": machine,
            "command": "longctx bench scheduler " + " ".join(argv)}


def summarise(records: list[dict]) -> list[dict]:
    """Medians over steps per (workload, ranks): speedups of longctx, its gap, solve times."""
    rows = []
    keys = sorted({(r["workload"], r["ranks"]) for r in records})
    for workload, ranks in keys:
        mine = [r for r in records if (r["workload"], r["ranks"]) == (workload, ranks)]
        steps = sorted({r["step"] for r in mine})
        by = {(r["method"], r["step"]): r for r in mine}

        def median(f):
            return statistics.median(f(step) for step in steps)

        ours = lambda step: by[("longctx", step)]["step_time_ms"]  # noqa: E731
        row = {"workload": workload, "ranks": ranks, "steps": len(steps),
               "tokens_per_step": mine[0]["tokens_per_step"],
               "longctx_ms": median(ours), "lower_bound_ms": median(lambda s: by[("longctx", s)]["lower_bound_ms"]),
               "gap_pct": 100 * median(lambda s: ours(s) / by[("longctx", s)]["lower_bound_ms"] - 1),
               "solve_s": median(lambda s: by[("longctx", s)]["solve_time_s"]),
               "solve_max_s": max(by[("longctx", s)]["solve_time_s"] for s in steps)}
        for method in METHODS[1:]:
            row[f"x_{method}"] = median(lambda s: by[(method, s)]["step_time_ms"] / ours(s))
            row[f"gap_{method}_pct"] = 100 * median(
                lambda s: by[(method, s)]["step_time_ms"] / by[(method, s)]["lower_bound_ms"] - 1)
        rows.append(row)
    return rows


def markdown(rows: list[dict], command: str) -> str:
    lines = [f"Command: `{command}`. Medians over steps. `x M` = M's step time / longctx's (>1: longctx faster).",
             "",
             "| workload | ranks | tokens/step | longctx ms | bound ms | gap % | x static-arrival | x static-balanced "
             "| x flexsp | x bytescale | x longctx-greedy | static-arr gap % | static-bal gap % | solve s (max) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(
            f"| {r['workload']} | {r['ranks']} | {r['tokens_per_step']} | {r['longctx_ms']:.0f} | "
            f"{r['lower_bound_ms']:.0f} | {r['gap_pct']:.2f} | {r['x_static-arrival']:.2f} | "
            f"{r['x_static-balanced']:.2f} | {r['x_flexsp']:.3f} | {r['x_bytescale']:.3f} | "
            f"{r['x_longctx-greedy']:.3f} | {r['gap_static-arrival_pct']:.0f} | {r['gap_static-balanced_pct']:.0f} | "
            f"{r['solve_s']:.2f} ({r['solve_max_s']:.2f}) |")
    gaps = [r["gap_pct"] for r in rows]
    lines += ["", f"Median gap to the bound over all rows: {statistics.median(gaps):.2f}%."]
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    for workload in sorted({r["workload"] for r in rows}):
        mine = sorted((r for r in rows if r["workload"] == workload), key=lambda r: r["ranks"])
        ranks = [r["ranks"] for r in mine]
        left.plot(ranks, [r["x_static-arrival"] for r in mine], "o-", label=f"{workload}: vs static arrival")
        left.plot(ranks, [r["x_static-balanced"] for r in mine], "s--", label=f"{workload}: vs static balanced")
        right.plot(ranks, [r["gap_pct"] for r in mine], "o-", label=f"{workload}: longctx")
        right.plot(ranks, [r["gap_flexsp_pct"] for r in mine], "^:", label=f"{workload}: FlexSP-style")
        right.plot(ranks, [r["gap_bytescale_pct"] for r in mine], "v:", label=f"{workload}: ByteScale-style")
    for ax in (left, right):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("ranks")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    left.set_ylabel("speedup of longctx (x)")
    left.set_title("longctx speedup over best static DP x CP")
    left.axhline(1.0, color="grey", linewidth=0.8)
    right.set_yscale("symlog", linthresh=1)
    right.set_ylim(bottom=0)
    right.set_ylabel("gap to lower bound (%)")
    right.set_title("gap to the lower bound (median over steps)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    ranks_list = args.ranks or (QUICK_RANKS if args.quick else RANKS)
    steps = args.steps or (1 if args.quick else 3)
    tag = args.tag or ("quick" if args.quick else "full")
    header = provenance(argv)
    cost_model = CostModel()
    records = []
    for workload in args.workloads:
        for ranks in ranks_list:
            cluster = Cluster(ranks)
            budget = args.tokens_per_rank * ranks
            longest = min(budget, cost_model.max_tokens_per_rank(cluster) * ranks)
            batches = pack_steps(document_stream(workload, args.seed), budget, steps, longest)
            for step, lengths in enumerate(batches):
                for result in run_methods(lengths, cluster, cost_model):
                    records.append({"workload": workload, "ranks": ranks, "tokens_per_step": budget, "step": step,
                                    "sequences": len(lengths), **result, "load_average_1m": os.getloadavg()[0],
                                    "commit": header["commit"], "versions": header["versions"]})
                ours = records[-len(METHODS)]
                print(f"{workload:>8} {ranks:>6} ranks step {step}: longctx {ours['step_time_ms']:.0f} ms, bound "
                      f"{ours['lower_bound_ms']:.0f} ms, solve {ours['solve_time_s']:.2f} s", flush=True)
    rows = summarise(records)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    stem = args.out_dir / f"scheduler_{tag}"
    Path(f"{stem}.json").write_text(json.dumps({**header, "records": records, "summary": rows}, indent=1) + "\n")
    table = markdown(rows, header["command"])
    Path(f"{stem}.md").write_text(table)
    plot(rows, Path(f"{stem}.png"))
    print(table)
    print(f"wrote {stem}.json, .md, .png")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
