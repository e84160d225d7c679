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

Predicted vs measured: every step logs ``predicted_step_ms`` (the plan's time
under the planner's cost model, scaled for the machine's load measured on the
step before (`longctx.scheduler.step_prediction`), plus its per-step
overhead) and the measured ``step_time_ms``; per configuration the report
gives the median and worst ``|predicted / measured - 1|`` over the measured
steps, and the same for the profile alone (``prediction_error_unscaled``). The cost model is a
profile measured on this machine first, in the same run and the same gloo
world (`--cost-profile measure`, the default; `longctx.profiling`), or a
given profile file, or ``default`` (the built-in 7B/H100 constants: an
error near 100% here by construction).

`--quick` (a smoke run for `longctx bench`): 4 steps, 1 warm-up step, one
repeat, the quick profile. Also writes ``<output stem>.png``: predicted vs
measured step time of every measured step.

Caveat, stated in the JSON: on this CPU box the ranks are processes sharing a
few cores, so a rank idling in a wave frees a core for a busy one; the
numbers show that the dynamic path runs and what it costs here, not GPU
speed-ups.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "train"


def _run_config(args: argparse.Namespace, output_dir: str, overrides: list[str]):
    from longctx.runtime.train_cli import compose_run_config

    return compose_run_config([
        f"parallel.nprocs={args.nprocs}", f"train.steps={args.steps}", "train.checkpoint_every=0",
        "train.progress=false", f"train.output_dir={output_dir}", "tracker=none", "train.resume=never",
        "train.on_existing=overwrite",  # each repeat of a configuration reruns it in the same directory
        f"data.tokens_per_step={args.tokens_per_step}", f"data.max_doc_tokens={args.max_doc_tokens}",
        f"parallel.max_tokens_per_rank={args.max_tokens_per_rank}", f"model={args.model}", "optim.warmup_steps=1",
        *overrides,
    ])


def train_and_report(run) -> dict:
    """On every rank: train, return the per-step metrics (identical on every rank). A rank that fails
    prints its traceback at once: its peers may wait in a collective until the pool's timeout."""
    import torch.distributed as dist

    from longctx.runtime.trainer import train

    try:
        result = train(run)
    except Exception:
        print(f"longctx bench train: rank {dist.get_rank()} failed:\n{traceback.format_exc()}", file=sys.stderr,
              flush=True)
        raise
    return {"metrics": result.metrics}


def measure_cost_profile(run, quick: bool, command: str, path: str) -> None:
    """On every rank: measure `run`'s cost profile on this world; rank 0 writes it to `path`."""
    import torch.distributed as dist

    from longctx.profiling.profile import ProfileSettings, measure_profile

    profile = measure_profile(run, ProfileSettings.for_run(run, quick), command, Path(path).parent)
    if dist.get_rank() == 0:
        profile.write(path)


def prediction_errors(measured: list[dict], predicted: str = "predicted_step_ms") -> dict:
    """Median and worst ``|predicted / step_time_ms - 1|`` over the steps, and the steps' pairs; `predicted`:
    the metric compared (``predicted_unscaled_step_ms``: the profile alone, without the load scale)."""
    errors = [abs(m[predicted] / m["step_time_ms"] - 1.0) for m in measured]
    return {"median": statistics.median(errors), "worst": max(errors), "steps": len(errors),
            "predicted_ms": [m[predicted] for m in measured],
            "measured_ms": [m["step_time_ms"] for m in measured]}


def prediction_components(measured: list[dict]) -> dict:
    """Medians over the steps of each part of the prediction, predicted and measured (ms): the waves
    (plan time x load scale vs the busiest rank's time in the waves) and the rest of the step (the
    profile's step overhead vs step time - waves)."""
    def median(values) -> float:
        return statistics.median(list(values))

    return {
        "waves_predicted_ms": median(m["plan_predicted_ms"] * m["load_scale"] for m in measured),
        "waves_measured_ms": median(m["waves_ms"] for m in measured),
        "outside_waves_predicted_ms": median(m["predicted_step_ms"] - m["plan_predicted_ms"] * m["load_scale"]
                                             for m in measured),
        "outside_waves_measured_ms": median(m["outside_waves_ms"] for m in measured),
        "load_scale": median(m["load_scale"] for m in measured),
    }


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
        "mean_predicted_step_ms": statistics.fmean(m["predicted_step_ms"] for m in measured),
        "prediction_error": prediction_errors(measured),
        "prediction_error_unscaled": prediction_errors(measured, "predicted_unscaled_step_ms"),
        "prediction_components": prediction_components(measured),
        "load_scale": [m["load_scale"] for m in measured],
        "core_share": [m["core_share"] for m in measured],
        "expected_core_share": [m["expected_core_share"] for m in measured],
    }


def _header(argv: list[str]) -> dict:
    """Command, commit, versions, machine and time (`longctx.profiling.provenance`)."""
    from longctx.profiling.provenance import provenance

    return provenance("longctx bench train " + " ".join(argv))


def plot(results: dict, path: Path) -> None:
    """Predicted vs measured step time (ms) of every measured step, one marker per configuration."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 5))
    top = 0.0
    for name, result in results.items():
        error = result["prediction_error"]
        ax.plot(error["measured_ms"], error["predicted_ms"], "o", alpha=0.7,
                label=f"{name}: median {100 * error['median']:.0f}%, worst {100 * error['worst']:.0f}%")
        top = max(top, *error["measured_ms"], *error["predicted_ms"])
    ax.plot([0, top * 1.05], [0, top * 1.05], color="grey", linewidth=0.8, label="predicted = measured")
    ax.set_xlim(0, top * 1.05)
    ax.set_ylim(0, top * 1.05)
    ax.set_xlabel("measured step time (ms)")
    ax.set_ylabel("predicted step time (ms)")
    ax.set_title("step time: cost model vs measured")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="longctx bench train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="4 steps, 1 warm-up, 1 repeat, quick profile")
    parser.add_argument("--nprocs", type=int, default=4, help="gloo ranks (default 4)")
    parser.add_argument("--steps", type=int, default=None, help="steps per configuration (default 8, quick 4)")
    parser.add_argument("--warmup", type=int, default=None,
                        help="first steps left out of the numbers (default 2, quick 1)")
    parser.add_argument("--model", default="tiny", help="model preset (default tiny)")
    parser.add_argument("--tokens-per-step", type=int, default=8192)
    parser.add_argument("--max-doc-tokens", type=int, default=2048)
    parser.add_argument("--max-tokens-per-rank", type=int, default=1024,
                        help="per-rank token cap; below --max-doc-tokens it forces CP for long documents")
    parser.add_argument("--static-cp", type=int, default=2, help="CP size of the static meshes (default 2)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="runs per configuration, in ABC CBA order (default 2, quick 1)")
    parser.add_argument("--cost-profile", default="measure",
                        help="'measure' (profile this machine first, in this run; default), 'default' (the "
                             "built-in H100 constants) or a profile file from `longctx profile`")
    parser.add_argument("--output", default=None,
                        help="result JSON (default benchmarks/results/train/train_bench[_quick].json)")
    return parser


def _defaults(args: argparse.Namespace) -> argparse.Namespace:
    """Fill the settings left unset from --quick."""
    quick = args.quick
    args.steps = args.steps or (4 if quick else 8)
    args.warmup = args.warmup if args.warmup is not None else (1 if quick else 2)
    args.repeats = args.repeats if args.repeats is not None else (1 if quick else 2)
    args.output = args.output or str(RESULTS / f"train_bench{'_quick' if quick else ''}.json")
    return args


def _cost_profile(args: argparse.Namespace, pool, argv: list[str]) -> str | None:
    """The profile file the configurations plan with (measured here for 'measure'), or None for 'default'."""
    if args.cost_profile == "default":
        return None
    if args.cost_profile != "measure":
        if not Path(args.cost_profile).is_file():
            raise SystemExit(f"longctx bench train: --cost-profile {args.cost_profile!r} is not a file; give a "
                             "profile written by `longctx profile`, 'measure' or 'default'")
        return args.cost_profile
    path = str(Path(args.output).with_name(f"cost_profile_{args.model}_{args.nprocs}ranks"
                                           f"{'_quick' if args.quick else ''}.yaml"))
    with tempfile.TemporaryDirectory() as scratch:
        run = _run_config(args, f"{scratch}/profile", ["parallel=dynamic"])
        started = time.perf_counter()
        pool.run(measure_cost_profile, run, args.quick, "longctx bench train " + " ".join(argv), path)
    print(f"cost profile measured in {time.perf_counter() - started:.0f} s: {path}", flush=True)
    return path


def main(argv: list[str]) -> int:
    args = _defaults(_parser().parse_args(argv))
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
    with tempfile.TemporaryDirectory() as scratch, GlooPool(args.nprocs, timeout_s=1800) as pool:
        profile = _cost_profile(args, pool, argv)
        if profile is not None:
            configurations = {name: [*overrides, f"parallel.cost_profile={profile}"]
                              for name, overrides in configurations.items()}
        runs = {name: _run_config(args, f"{scratch}/{name}", overrides) for name, overrides in configurations.items()}
        names = list(runs)  # ABC, CBA, ABC, ...: slow drifts of a shared machine's load cancel
        order = [name for r in range(args.repeats) for name in (names if r % 2 == 0 else names[::-1])]
        collected: dict[str, list[dict]] = {name: [] for name in runs}
        walls: dict[str, float] = {name: 0.0 for name in runs}
        loads: dict[str, list[float]] = {name: [] for name in runs}
        for name in order:
            started = time.perf_counter()
            loads[name].append(os.getloadavg()[0])
            metrics = pool.run(train_and_report, runs[name])[0]["metrics"]
            loads[name].append(os.getloadavg()[0])
            walls[name] += time.perf_counter() - started
            collected[name].append(metrics)
        results = {}
        for name, repeats in collected.items():
            measured = [m for metrics in repeats for m in metrics[args.warmup:]]
            results[name] = {"overrides": configurations[name], "repeats": len(repeats), "wall_s": walls[name],
                             "load_average_1m_before_after_each_repeat": loads[name],
                             **_summary(measured, args.nprocs), "losses": [m["loss"] for m in repeats[0]]}
            error, unscaled = results[name]["prediction_error"], results[name]["prediction_error_unscaled"]
            print(f"{name:16s} {results[name]['tokens_per_s']:9.0f} tokens/s  "
                  f"busy {sum(results[name]['busy_s']):7.1f}s  idle {sum(results[name]['idle_s']):7.1f}s  "
                  f"|predicted/measured - 1|: median {100 * error['median']:.1f}%, worst {100 * error['worst']:.1f}% "
                  f"(without the load scale {100 * unscaled['median']:.1f}% / {100 * unscaled['worst']:.1f}%)",
                  flush=True)
    ratios = {f"dynamic_over_{name}": results["dynamic"]["tokens_per_s"] / results[name]["tokens_per_s"]
              for name in ("static_balanced", "static_arrival")}
    report = {
        **header,
        "settings": vars(args),
        "results": results,
        "ratios_tokens_per_s": ratios,
        "cost_profile": profile or "default (built-in 7B/H100 constants)",
        "caveat": "CPU gloo ranks share the machine's cores: this measures the dynamic path's behaviour, "
                  "overhead and the cost model's accuracy here, not GPU speed-ups. Other jobs share the cores: "
                  "predicted_step_ms scales the profile's plan time by the load measured on the step before "
                  "(load_scale = the profile's / the measured core share of the step before, for that step's "
                  "shapes); prediction_error_unscaled is the "
                  "profile alone",
        "flops_convention": "see longctx.model.flops",
    }
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(report, indent=2) + "\n")
    plot(results, Path(args.output).with_suffix(".png"))
    print(", ".join(f"{k} = {v:.3f}" for k, v in ratios.items()))
    print(f"wrote {args.output} and {Path(args.output).with_suffix('.png')}")
    return 0
