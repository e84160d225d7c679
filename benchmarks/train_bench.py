"""`longctx bench train`: dynamic vs static meshes, end to end, on local gloo ranks.

One run starts `--nprocs` gloo processes once and trains the same model on the
same data (the embedded default corpus, same seed, same steps) three times:
the dynamic plan (scheduler MILP every step), the static DP x CP mesh in
balanced (LPT) order and in arrival order (Megatron-style packing). A per-rank
token cap (`--max-tokens-per-rank`) below the longest document makes context
parallelism necessary, as on GPUs with long documents: static meshes must use
CP groups for every sequence, the dynamic plan only for the long ones.

Reported per configuration, over the steps after `--warmup` (the first steps
pay imports and allocator warm-up): tokens/s (all tokens / all step time),
mean step time, per-rank busy and idle seconds (see
`longctx.runtime.metrics`), the planner's mean predicted gap to its lower
bound, mean waves per step, and the losses (equal across configurations up to
fp32 rounding, since every plan computes the same step). The closing note is
the ratio dynamic / static tokens/s.

Caveat, stated in the JSON: on this CPU box the ranks are processes sharing a
few cores, so a rank idling in a wave frees a core for a busy one and the
cost model is the H100 profile (planning shape only); the numbers show that
the dynamic path runs and what it costs here, not GPU speed-ups.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "train"


def _run_config(args: argparse.Namespace, output_dir: str, overrides: list[str]):
    from longctx.runtime.train_cli import compose_run_config

    return compose_run_config([
        f"parallel.nprocs={args.nprocs}", f"train.steps={args.steps}", "train.checkpoint_every=0",
        "train.progress=false", f"train.output_dir={output_dir}", "tracker=none", "train.resume=never",
        f"data.tokens_per_step={args.tokens_per_step}", f"data.max_doc_tokens={args.max_doc_tokens}",
        f"parallel.max_tokens_per_rank={args.max_tokens_per_rank}", f"model={args.model}", "optim.warmup_steps=1",
        *overrides,
    ])


def train_and_report(run) -> dict:
    """On every rank: train, return the per-step metrics (identical on every rank)."""
    from longctx.runtime.trainer import train

    result = train(run)
    return {"metrics": result.metrics}


def _summary(measured: list[dict], world: int) -> dict:
    from longctx.runtime.metrics import busy_idle

    total_time = sum(m["step_time_s"] for m in measured)
    return {
        "tokens_per_s": sum(m["tokens"] for m in measured) / total_time,
        "mean_step_time_s": total_time / len(measured),
        **busy_idle(measured, world),
        "busy_fraction": statistics.fmean(m["busy_fraction"] for m in measured),
        "mean_waves": statistics.fmean(m["plan_waves"] for m in measured),
        "mean_predicted_gap_to_bound": statistics.fmean(m["plan_gap_to_bound"] for m in measured),
        "mean_predicted_step_ms": statistics.fmean(m["plan_predicted_ms"] for m in measured),
    }


def _header(argv: list[str]) -> dict:
    """Commit, versions, machine (the scheduler suite's provenance), with this suite's command and torch."""
    from longctx.benchmarks.scheduler_bench import provenance

    header = provenance(argv)
    header["command"] = "longctx bench train " + " ".join(argv)
    header["versions"]["torch"] = metadata.version("torch")
    return header


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="longctx bench train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--nprocs", type=int, default=4, help="gloo ranks (default 4)")
    parser.add_argument("--steps", type=int, default=8, help="steps per configuration (default 8)")
    parser.add_argument("--warmup", type=int, default=2, help="first steps left out of the numbers (default 2)")
    parser.add_argument("--model", default="tiny", help="model preset (default tiny)")
    parser.add_argument("--tokens-per-step", type=int, default=8192)
    parser.add_argument("--max-doc-tokens", type=int, default=2048)
    parser.add_argument("--max-tokens-per-rank", type=int, default=1024,
                        help="per-rank token cap; below --max-doc-tokens it forces CP for long documents")
    parser.add_argument("--static-cp", type=int, default=2, help="CP size of the static meshes (default 2)")
    parser.add_argument("--repeats", type=int, default=2,
                        help="runs per configuration, in ABC CBA order (default 2)")
    parser.add_argument("--output", default=str(RESULTS / "train_bench.json"))
    return parser


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    if args.repeats < 1:
        print(f"longctx bench train: --repeats={args.repeats} must be >= 1", file=sys.stderr)
        return 2
    if args.warmup >= args.steps:
        print(f"longctx bench train: --warmup={args.warmup} must be below --steps={args.steps}", file=sys.stderr)
        return 2
    from longctx.testing import GlooPool

    configurations = {
        "dynamic": ["parallel=dynamic"],
        "static_balanced": ["parallel=static", f"parallel.cp={args.static_cp}", "parallel.static_order=balanced"],
        "static_arrival": ["parallel=static", f"parallel.cp={args.static_cp}", "parallel.static_order=arrival"],
    }
    header = _header(argv)
    with tempfile.TemporaryDirectory() as scratch:
        runs = {name: _run_config(args, f"{scratch}/{name}", overrides) for name, overrides in configurations.items()}
        names = list(runs)  # ABC, CBA, ABC, ...: slow drifts of a shared machine's load cancel
        order = [name for r in range(args.repeats) for name in (names if r % 2 == 0 else names[::-1])]
        collected: dict[str, list[dict]] = {name: [] for name in runs}
        walls: dict[str, float] = {name: 0.0 for name in runs}
        loads: dict[str, list[float]] = {name: [] for name in runs}
        with GlooPool(args.nprocs, timeout_s=1800) as pool:
            for name in order:
                started = time.perf_counter()
                loads[name].append(os.getloadavg()[0])
                metrics = pool.run(train_and_report, runs[name])[0]["metrics"]
                walls[name] += time.perf_counter() - started
                collected[name].append(metrics)
        results = {}
        for name, repeats in collected.items():
            measured = [m for metrics in repeats for m in metrics[args.warmup:]]
            results[name] = {"overrides": configurations[name], "repeats": len(repeats), "wall_s": walls[name],
                             "load_average_1m": loads[name],
                             **_summary(measured, args.nprocs), "losses": [m["loss"] for m in repeats[0]]}
            print(f"{name:16s} {results[name]['tokens_per_s']:9.0f} tokens/s  "
                  f"busy {sum(results[name]['busy_s']):7.1f}s  idle {sum(results[name]['idle_s']):7.1f}s",
                  flush=True)
    ratios = {f"dynamic_over_{name}": results["dynamic"]["tokens_per_s"] / results[name]["tokens_per_s"]
              for name in ("static_balanced", "static_arrival")}
    report = {
        **header,
        "settings": vars(args),
        "results": results,
        "ratios_tokens_per_s": ratios,
        "caveat": "CPU gloo ranks share the machine's cores and the planner uses the H100 cost profile: "
                  "this measures the dynamic path's behaviour and overhead here, not GPU speed-ups",
        "flops_convention": "see longctx.model.flops",
    }
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(report, indent=2) + "\n")
    print(", ".join(f"{k} = {v:.3f}" for k, v in ratios.items()))
    print(f"wrote {args.output}")
    return 0
