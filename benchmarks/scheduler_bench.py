"""`longctx bench scheduler`: the planner, its peers and the lower bound, side by side in one run.

For every workload x ranks x step, one step is sampled and every method is
timed by the one simulator (ms):

- ``longctx``: the full planner (`plan_step`, method "milp": greedy, compact
  MILP, moldable placement, long-document MILP), with the best static plan
  and megatron-core's plan among its candidates (`peer_plans`);
- ``longctx-greedy``: the same planner without any MILP (method "greedy"),
  so ``x longctx-greedy`` is the MILPs' own contribution;
- ``megatron-balanced-cp``: megatron-core's real `BalancedCPScheduler`
  (`longctx/peers/megatron_balanced_cp.py`, best of its max_seq_len_per_rank settings); run up to
  `MEGATRON_MAX_RANKS` ranks (its pure-Python loop is O(ranks x samples));
- ``static-arrival`` / ``static-balanced``: static DP x CP, best CP size;
- ``flexsp``: FlexSP-style re-implementation (the MILP over power-of-two
  Ulysses groups), ``bytescale``: ByteScale-style re-implementation (greedy
  over ring groups of any size); both are longctx's code in those shape
  spaces, not the original systems.

Workloads: ``web`` and ``longmix`` (16K tokens per rank, packed documents) and
the long-document steps ``one-1m``, ``several``, ``bimodal``
(`workloads.long_document_step`, 64K tokens per rank, from
`LONG_MIN_RANKS` ranks). The sweep runs the planners without a wall-clock
limit by default (their deterministic work limits bound them), so the step
times do not depend on the machine's load; ``--solve-ranks`` adds a
solve-time table: the wall time of `plan_step` under ``--solve-time-limit``
(preparation included) on a web step at those rank counts, the plan's gap to
the bound over every legal shape beside static's, and the wall time of a whole
`longctx plan` process on the same step.

Output under ``--out-dir`` (default benchmarks/results/scheduler/):
``scheduler_<tag>.json`` (one record per workload, ranks, method, step:
step_time_ms, lower_bound_ms, solve_time_s, detail, load_average_1m, commit,
versions; plus a header naming the machine and command, the summary rows and
the solve-time rows), ``scheduler_<tag>.md`` (ratios per cell: medians over
steps; solve times), ``scheduler_<tag>.png``.

Quick mode (``--quick``; what `longctx bench` with no suite runs): web and
longmix at 8 and 64 ranks and the long-document shapes at 64 ranks, one step
each; about a minute on 2 quiet cores. From Python:
``run_quick(out_dir) -> dict`` runs it and returns {"markdown", "summary",
"json", "png"}. Never imports torch at import time (megatron-core, which does,
is imported only when its method runs).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

from longctx.scheduler import (Cluster, CostModel, SchedulerInputError, best_static_plan, bytescale_plan,
                               flexsp_plan, plan_step)
from longctx.scheduler.lower_bound import lower_bound_ms
from longctx.scheduler.step_sampling import sample_steps
from longctx.scheduler.workloads import LONG_SHAPES, LONG_TOKENS_PER_RANK, SAMPLERS, long_document_step

RANKS = (8, 64, 512, 4096)
QUICK_RANKS = (8, 64)
#: long-document steps start at this many ranks (the issue's range is 64-4096)
LONG_MIN_RANKS = 64
METHODS = ("longctx", "longctx-greedy", "megatron-balanced-cp", "static-arrival", "static-balanced", "flexsp",
           "bytescale")
#: megatron's scheduler is pure Python, O(ranks x samples): minutes at 512 ranks, hours at 4096
MEGATRON_MAX_RANKS = 512
WORKLOADS = tuple(sorted(SAMPLERS)) + LONG_SHAPES
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "scheduler"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="longctx bench scheduler", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small sweep: 8 and 64 ranks, one step")
    p.add_argument("--ranks", type=int, nargs="+", help=f"rank counts (default {RANKS})")
    p.add_argument("--workloads", nargs="*", choices=WORKLOADS, default=list(WORKLOADS),
                   help="workloads (none: only the solve-time table)")
    p.add_argument("--steps", type=int, help="steps per (workload, ranks); default 3 (1 with --quick)")
    p.add_argument("--tokens-per-rank", type=int, default=16384, help="web/longmix step budget per rank")
    p.add_argument("--long-tokens-per-rank", type=int, default=LONG_TOKENS_PER_RANK,
                   help="long-document step budget per rank")
    p.add_argument("--time-limit", type=float, default=None,
                   help="wall-clock limit (s) of plan_step and the FlexSP-style MILP in the sweep; default none: "
                        "the deterministic work limits only, so the numbers do not depend on the machine's load")
    p.add_argument("--solve-time-limit", type=float, default=1.0, help="wall-clock limit (s) for the solve-time table")
    p.add_argument("--solve-ranks", type=int, nargs="*", default=[],
                   help="rank counts for the solve-time table (plan_step wall time on a web step)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out-dir", type=Path, default=DEFAULT_OUT)
    p.add_argument("--tag", help="file name tag (default quick|full)")
    return p


def step_lengths(workload: str, cluster: Cluster, cost_model: CostModel, step: int, args) -> list[int]:
    """One step of `workload` on `cluster` (the `step`-th of its stream, or seed + step for long documents)."""
    if workload in LONG_SHAPES:
        return long_document_step(workload, cluster.num_ranks, args.seed + step, args.long_tokens_per_rank)
    budget = args.tokens_per_rank * cluster.num_ranks
    longest = min(budget, cost_model.max_tokens_per_rank(cluster) * cluster.num_ranks)
    return sample_steps(workload, args.seed, budget, step + 1, longest)[step]


def _megatron(lengths, cluster: Cluster, cost_model: CostModel, bound: float):
    """megatron-core's plan (imports torch, so only here), or None above MEGATRON_MAX_RANKS or when it has none."""
    if cluster.num_ranks > MEGATRON_MAX_RANKS:
        return None
    from longctx.peers.megatron_balanced_cp import megatron_balanced_cp_plan

    try:
        return megatron_balanced_cp_plan(lengths, cluster, cost_model, bound)
    except SchedulerInputError as err:
        print(f"  megatron-balanced-cp: no plan ({err})", flush=True)
        return None


def run_methods(lengths: list[int], cluster: Cluster, cost_model: CostModel,
                time_limit_s: float | None) -> list[dict]:
    """Every method on one step: dicts with method, step_time_ms, solve_time_s, detail (megatron absent when not run)."""
    started = time.perf_counter()
    bound = lower_bound_ms(lengths, cluster, cost_model)
    bound_s = time.perf_counter() - started
    megatron = _megatron(lengths, cluster, cost_model, bound)
    peers = [megatron] if megatron is not None else []
    plans = {
        "longctx": plan_step(lengths, cluster, cost_model=cost_model, time_limit_s=time_limit_s, peer_plans=peers),
        "longctx-greedy": plan_step(lengths, cluster, cost_model=cost_model, method="greedy",
                                    time_limit_s=time_limit_s),
        "megatron-balanced-cp": megatron,
        "static-arrival": best_static_plan(lengths, cluster, order="arrival", cost_model=cost_model,
                                           lower_bound=bound),
        "static-balanced": best_static_plan(lengths, cluster, order="balanced", cost_model=cost_model,
                                            lower_bound=bound),
        "flexsp": flexsp_plan(lengths, cluster, cost_model, bound, time_limit_s=time_limit_s),
        "bytescale": bytescale_plan(lengths, cluster, cost_model, bound),
    }
    out = []
    for method, plan in plans.items():
        if plan is None:
            continue
        solve = plan.solve_time_s + (bound_s if method not in ("longctx", "longctx-greedy") else 0.0)
        out.append({"method": method, "step_time_ms": plan.predicted_step_time_ms, "lower_bound_ms": bound,
                    "solve_time_s": solve, "detail": f"{plan.method}; " + " | ".join(plan.notes)})
    return out


def solve_time_rows(ranks_list: list[int], cost_model: CostModel, args) -> list[dict]:
    """plan_step wall time (preparation included) under --solve-time-limit on one web step per rank count.

    The gaps are to the bound over every legal shape, computed apart (untimed: under a tight limit the
    plan itself may report a weaker bound); ``cli_wall_s`` is a whole `longctx plan --workload web` process
    (start-up, sampling the step, planning, writing the JSON)."""
    rows = []
    for ranks in ranks_list:
        cluster = Cluster(ranks)
        lengths = step_lengths("web", cluster, cost_model, 0, args)
        load_before = os.getloadavg()[0]
        started, cpu_started = time.perf_counter(), time.process_time()
        plan = plan_step(lengths, cluster, cost_model=cost_model, time_limit_s=args.solve_time_limit)
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        bound = lower_bound_ms(lengths, cluster, cost_model)
        static = best_static_plan(lengths, cluster, order="balanced", cost_model=cost_model, lower_bound=bound)
        skipped = [note for note in plan.notes if "wall clock" in note]
        rows.append({"ranks": ranks, "sequences": len(lengths), "time_limit_s": args.solve_time_limit, "wall_s": wall,
                     "cpu_s": cpu, "cli_wall_s": _cli_wall_s(ranks, args), "method": plan.method,
                     "step_time_ms": plan.predicted_step_time_ms, "lower_bound_ms": bound,
                     "gap_pct": 100 * (plan.predicted_step_time_ms / bound - 1),
                     "static_gap_pct": 100 * (static.predicted_step_time_ms / bound - 1),
                     "skipped": skipped[0] if skipped else "", "load_average_1m": max(load_before, os.getloadavg()[0])})
        print(f"solve time {ranks:>6} ranks: {wall:.2f} s (limit {args.solve_time_limit} s, CLI "
              f"{rows[-1]['cli_wall_s']:.2f} s), gap {rows[-1]['gap_pct']:.2f}% (static "
              f"{rows[-1]['static_gap_pct']:.0f}%)", flush=True)
    return rows


def _cli_wall_s(ranks: int, args) -> float:
    """Wall time (s) of one `longctx plan` process on the web step at `ranks` ranks, plan written to a temp dir."""
    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "longctx.cli", "plan", "--workload", "web", "--ranks", str(ranks),
                        "--seed", str(args.seed), "--tokens-per-rank", str(args.tokens_per_rank), "--time-limit",
                        str(args.solve_time_limit), "--rows", "0", "--out", f"{out}/plan.json"],
                       check=True, capture_output=True, timeout=600)
        return time.perf_counter() - started


def provenance(argv: list[str]) -> dict:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10,
                                cwd=Path(__file__).resolve().parent).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = "unknown"
    versions = {"python": platform.python_version()}
    for package in ("longctx", "pulp", "highspy", "numpy", "megatron-core"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "missing"
    machine = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
               "cpus": os.cpu_count(), "load_average_1m": os.getloadavg()[0]}
    return {"commit": commit or "unknown", "versions": versions, "machine": machine,
            "command": "longctx bench scheduler " + " ".join(argv)}


def summarise(records: list[dict]) -> list[dict]:
    """Medians over steps per (workload, ranks): each method's step time / longctx's, gaps, solve times."""
    rows = []
    keys = sorted({(r["workload"], r["ranks"]) for r in records}, key=lambda k: (WORKLOADS.index(k[0]), k[1]))
    for workload, ranks in keys:
        mine = [r for r in records if (r["workload"], r["ranks"]) == (workload, ranks)]
        steps = sorted({r["step"] for r in mine})
        by = {(r["method"], r["step"]): r for r in mine}

        def median(f, method="longctx"):
            return statistics.median(f(step) for step in steps if (method, step) in by)

        ours = lambda step: by[("longctx", step)]["step_time_ms"]  # noqa: E731
        row = {"workload": workload, "ranks": ranks, "steps": len(steps),
               "tokens_per_step": mine[0]["tokens_per_step"],
               "longctx_ms": median(ours), "lower_bound_ms": median(lambda s: by[("longctx", s)]["lower_bound_ms"]),
               "gap_pct": 100 * median(lambda s: ours(s) / by[("longctx", s)]["lower_bound_ms"] - 1),
               "solve_s": median(lambda s: by[("longctx", s)]["solve_time_s"]),
               "solve_max_s": max(by[("longctx", s)]["solve_time_s"] for s in steps)}
        for method in METHODS[1:]:
            if not any((method, s) in by for s in steps):
                continue  # not run on this cell (megatron above MEGATRON_MAX_RANKS)
            row[f"x_{method}"] = median(lambda s: by[(method, s)]["step_time_ms"] / ours(s), method)
            row[f"gap_{method}_pct"] = 100 * median(
                lambda s: by[(method, s)]["step_time_ms"] / by[(method, s)]["lower_bound_ms"] - 1, method)
            row[f"solve_{method}_s"] = median(lambda s: by[(method, s)]["solve_time_s"], method)
        rows.append(row)
    return rows


def _cell(row: dict, key: str, fmt: str) -> str:
    return format(row[key], fmt) if key in row else "not run"


def markdown(rows: list[dict], solve_rows: list[dict], command: str) -> str:
    lines = [f"Command: `{command}`. Medians over steps. `x M` = M's step time / longctx's (>1: longctx faster); "
             "gap = step time / lower bound - 1. flexsp and bytescale are FlexSP-style and ByteScale-style "
             "re-implementations in longctx's code; megatron is megatron-core's own BalancedCPScheduler.",
             "",
             "| workload | ranks | tokens/step | longctx ms | bound ms | gap % | greedy-only gap % | x greedy-only "
             "| x static-balanced | x static-arrival | x megatron | x flexsp-style | x bytescale-style "
             "| static-bal gap % | megatron gap % |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(
            f"| {r['workload']} | {r['ranks']} | {r['tokens_per_step']} | {r['longctx_ms']:.0f} | "
            f"{r['lower_bound_ms']:.0f} | {r['gap_pct']:.2f} | {_cell(r, 'gap_longctx-greedy_pct', '.2f')} | "
            f"{_cell(r, 'x_longctx-greedy', '.3f')} | {_cell(r, 'x_static-balanced', '.2f')} | "
            f"{_cell(r, 'x_static-arrival', '.2f')} | {_cell(r, 'x_megatron-balanced-cp', '.2f')} | "
            f"{_cell(r, 'x_flexsp', '.3f')} | {_cell(r, 'x_bytescale', '.3f')} | "
            f"{_cell(r, 'gap_static-balanced_pct', '.1f')} | {_cell(r, 'gap_megatron-balanced-cp_pct', '.1f')} |")
    gaps = [r["gap_pct"] for r in rows] or [float("nan")]
    lines += ["", f"Median gap to the bound over all rows: {statistics.median(gaps):.2f}%; "
              f"worst {max(gaps):.2f}%.", "",
              "Solve times (s, median over steps; longctx includes its preparation and the static candidate, "
              "not megatron's own time):", "",
              "| workload | ranks | longctx | greedy-only | megatron | static-balanced | flexsp-style | "
              "bytescale-style |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['workload']} | {r['ranks']} | {r['solve_s']:.2f} (max {r['solve_max_s']:.2f}) | "
                     + " | ".join(_cell(r, f"solve_{m}_s", ".2f") for m in
                                  ("longctx-greedy", "megatron-balanced-cp", "static-balanced", "flexsp",
                                   "bytescale")) + " |")
    if solve_rows:
        lines += ["", "plan_step wall time under the wall-clock limit (preparation included), one web step; "
                  "gaps to the bound over every legal shape (computed apart); CLI: a whole `longctx plan` process "
                  "(start-up, sampling the step, planning, writing the JSON):", "",
                  "| ranks | sequences | limit s | wall s | CPU s | CLI wall s | method | gap % | static gap % | "
                  "load avg | stages skipped |", "|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---|"]
        lines += [f"| {r['ranks']} | {r['sequences']} | {r['time_limit_s']} | {r['wall_s']:.2f} | {r['cpu_s']:.2f} | "
                  f"{r['cli_wall_s']:.2f} | {r['method']} | {r['gap_pct']:.2f} | {r['static_gap_pct']:.0f} | "
                  f"{r['load_average_1m']:.1f} | {_skipped_stages(r['skipped'])} |" for r in solve_rows]
    return "\n".join(lines) + "\n"


def _skipped_stages(note: str) -> str:
    """The list of skipped stages from the planner's wall-clock note ("-" when none)."""
    return note[note.index("skipped ") + len("skipped "):note.index("; ")] if note else "-"


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.8))
    for workload in WORKLOADS:
        mine = sorted((r for r in rows if r["workload"] == workload), key=lambda r: r["ranks"])
        if not mine:
            continue
        ranks = [r["ranks"] for r in mine]
        left.plot(ranks, [r["x_static-balanced"] for r in mine], "s--", label=f"{workload}: vs static balanced")
        meg = [(r["ranks"], r["x_megatron-balanced-cp"]) for r in mine if "x_megatron-balanced-cp" in r]
        if meg:
            left.plot(*zip(*meg), "^:", label=f"{workload}: vs megatron-core")
        right.plot(ranks, [r["gap_pct"] for r in mine], "o-", label=f"{workload}: longctx")
        right.plot(ranks, [r["gap_longctx-greedy_pct"] for r in mine], "x:", label=f"{workload}: greedy only")
    for ax in (left, right):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("ranks")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=6)
    left.set_ylabel("speedup of longctx (x)")
    left.set_title("longctx speedup over static DP x CP and megatron-core")
    left.axhline(1.0, color="grey", linewidth=0.8)
    right.set_yscale("symlog", linthresh=1)
    right.set_ylim(bottom=0)
    right.set_ylabel("gap to lower bound (%)")
    right.set_title("gap to the lower bound: full planner vs greedy only")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def cells(args) -> list[tuple[str, int]]:
    """(workload, ranks) pairs of the sweep: long-document shapes only from LONG_MIN_RANKS ranks."""
    ranks_list = args.ranks or (QUICK_RANKS if args.quick else RANKS)
    return [(w, r) for w in args.workloads for r in ranks_list if w not in LONG_SHAPES or r >= LONG_MIN_RANKS]


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    steps = args.steps or (1 if args.quick else 3)
    tag = args.tag or ("quick" if args.quick else "full")
    header = provenance(argv)
    cost_model = CostModel()
    records = []
    for workload, ranks in cells(args):
        cluster = Cluster(ranks)
        budget = (args.long_tokens_per_rank if workload in LONG_SHAPES else args.tokens_per_rank) * ranks
        for step in range(steps):
            lengths = step_lengths(workload, cluster, cost_model, step, args)
            results = run_methods(lengths, cluster, cost_model, args.time_limit)
            for result in results:
                records.append({"workload": workload, "ranks": ranks, "tokens_per_step": budget, "step": step,
                                "sequences": len(lengths), **result, "load_average_1m": os.getloadavg()[0],
                                "commit": header["commit"], "versions": header["versions"]})
            ours = results[0]
            print(f"{workload:>8} {ranks:>6} ranks step {step}: longctx {ours['step_time_ms']:.0f} ms, bound "
                  f"{ours['lower_bound_ms']:.0f} ms, solve {ours['solve_time_s']:.2f} s", flush=True)
    rows = summarise(records)
    solve_rows = solve_time_rows(args.solve_ranks, cost_model, args)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    stem = args.out_dir / f"scheduler_{tag}"
    Path(f"{stem}.json").write_text(json.dumps({**header, "records": records, "summary": rows,
                                                "solve_time": solve_rows}, indent=1) + "\n")
    table = markdown(rows, solve_rows, header["command"])
    Path(f"{stem}.md").write_text(table)
    if rows:
        plot(rows, Path(f"{stem}.png"))
    print(table)
    print(f"wrote {stem}.json, .md, .png")
    return 0


def run_quick(out_dir: Path | str = DEFAULT_OUT) -> dict:
    """The quick sweep into `out_dir`: {"markdown": the tables, "summary": rows, "json", "png": paths}."""
    out_dir = Path(out_dir)
    code = main(["--quick", "--out-dir", str(out_dir), "--tag", "quick"])
    if code:
        raise RuntimeError(f"scheduler bench quick mode exited with {code}")
    data = json.loads((out_dir / "scheduler_quick.json").read_text())
    return {"markdown": (out_dir / "scheduler_quick.md").read_text(), "summary": data["summary"],
            "json": str(out_dir / "scheduler_quick.json"), "png": str(out_dir / "scheduler_quick.png")}


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
