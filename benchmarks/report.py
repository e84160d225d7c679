"""`longctx bench` (no suite): every suite in its quick mode, one report with the plots.

Writes ``benchmarks/results/REPORT.md`` (``--out``): a header (command, commit,
machine, versions), a summary table (suite, status, wall time, headline
numbers) and one section per suite with its table and plot. Every ratio in it
is measured within one run of its suite, the compared configurations side by
side (same process, same data, same load), never against numbers from another
run. Suites:

- scheduler: `scheduler_bench.run_quick` -> ``results/scheduler/scheduler_quick.{json,md,png}``
- attention: `attention_bench --quick` on CPU gloo -> ``results/attention/attention_quick.{json,png}``
- train: `train_bench --quick` (profile measured first) -> ``results/train/train_bench_quick.{json,png}``
- kernels: GPU only; without CUDA the report says it was not run (no numbers are made up)
- any other registered suite: its ``main(["--quick"])``, status and wall time only

A suite that fails is reported as failed with its error; the others still run.
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

RESULTS = Path(__file__).resolve().parent / "results"
REPORT = RESULTS / "REPORT.md"


@dataclass
class SuiteResult:
    """One suite's part of the report."""

    name: str
    status: str = "ok"
    wall_s: float = 0.0
    #: short headline numbers for the summary table
    headline: list[str] = field(default_factory=list)
    #: the suite's markdown section body (tables, plot links)
    body: str = ""


def _scheduler(result: SuiteResult) -> None:
    from longctx.benchmarks import scheduler_bench

    quick = scheduler_bench.run_quick(RESULTS / "scheduler")
    rows = quick["summary"]
    for key, label in (("x_static-balanced", "x static balanced"), ("x_megatron-balanced-cp", "x megatron-core"),
                       ("x_longctx-greedy", "x greedy-only"), ("gap_pct", "gap to bound %")):
        values = [row[key] for row in rows if isinstance(row.get(key), (int, float))]
        if values:
            result.headline.append(f"{label}: median {statistics.median(values):.3g} "
                                   f"(range {min(values):.3g}-{max(values):.3g})")
    png = Path(quick["png"])
    result.body = quick["markdown"].strip() + (f"\n\n![scheduler]({png.relative_to(RESULTS)})" if png.is_file() else "")


def _attention(result: SuiteResult) -> None:
    from longctx.benchmarks import attention_bench

    out = RESULTS / "attention"
    with tempfile.TemporaryDirectory() as scratch:
        code = attention_bench.main(["--quick", "--out-dir", scratch])
        if code:
            raise RuntimeError(f"attention_bench exited with {code}")
        written = sorted(Path(scratch).glob("*.json"))
        out.mkdir(parents=True, exist_ok=True)
        shutil.copy(written[-1], out / "attention_quick.json")
    data = json.loads((out / "attention_quick.json").read_text())
    rows = data["cpu_gloo"]
    local = statistics.median(r["fwd_bwd_ms_median"] for r in rows if r["group_size"] == 1)
    lines = ["Forward + backward of context-parallel attention on one packed batch, slowest rank, median ms; "
             "`x local` = the one-rank time / this time, same run.", "",
             "| kind | ranks | Ulysses degree | ms | x local | bytes sent per rank (max) |", "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['kind']} | {r['group_size']} | {r['ulysses_degree']} | {r['fwd_bwd_ms_median']:.1f} | "
                     f"{local / r['fwd_bwd_ms_median']:.2f} | {r['bytes_sent_per_rank_max']} |")
    best = max((r for r in rows if r["group_size"] > 1), key=lambda r: local / r["fwd_bwd_ms_median"], default=None)
    if best is not None:
        result.headline.append(f"best x local: {local / best['fwd_bwd_ms_median']:.2f} "
                               f"({best['kind']}, {best['group_size']} ranks)")
    _attention_plot(rows, out / "attention_quick.png")
    result.body = "\n".join(lines) + f"\n\nConfig: `{json.dumps(data['config'])}`\n\n![attention](attention/attention_quick.png)"


def _attention_plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    for kind in sorted({r["kind"] for r in rows}):
        mine = sorted((r for r in rows if r["kind"] == kind), key=lambda r: r["group_size"])
        ax.plot([r["group_size"] for r in mine], [r["fwd_bwd_ms_median"] for r in mine], "o-", label=kind)
    ax.set_xlabel("ranks in the group")
    ax.set_ylabel("forward + backward, slowest rank (ms)")
    ax.set_title("context-parallel attention on CPU gloo (quick)")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _train(result: SuiteResult) -> None:
    from longctx.benchmarks import train_bench

    out = RESULTS / "train" / "train_bench_quick.json"
    code = train_bench.main(["--quick", "--output", str(out)])
    if code:
        raise RuntimeError(f"train_bench exited with {code}")
    data = json.loads(out.read_text())
    lines = [f"Cost profile: `{Path(str(data['cost_profile'])).name}`, measured on this machine in the same run. "
             "Prediction error = |predicted_step_ms / step_time_ms - 1| over the measured steps; unscaled: "
             "without the load scale (the previous step's measured CPU share, `scheduler/step_prediction.py`).", "",
             "| configuration | tokens/s | mean step s | median error % | worst error % | unscaled median / worst % "
             "| steps |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for name, r in data["results"].items():
        e, u = r["prediction_error"], r["prediction_error_unscaled"]
        lines.append(f"| {name} | {r['tokens_per_s']:.0f} | {r['mean_step_time_s']:.2f} | {100 * e['median']:.1f} | "
                     f"{100 * e['worst']:.1f} | {100 * u['median']:.1f} / {100 * u['worst']:.1f} | {e['steps']} |")
    lines += ["", ", ".join(f"{k} = {v:.3f}" for k, v in data["ratios_tokens_per_s"].items()),
              "", "![train](train/train_bench_quick.png)"]
    dynamic = data["results"]["dynamic"]["prediction_error"]
    result.headline += [f"{k}: {v:.2f}" for k, v in data["ratios_tokens_per_s"].items()]
    result.headline.append(f"dynamic prediction error: median {100 * dynamic['median']:.0f}%, "
                           f"worst {100 * dynamic['worst']:.0f}%")
    result.body = "\n".join(lines)


def _kernels(result: SuiteResult) -> None:
    import torch

    if not torch.cuda.is_available():
        result.status = "not run"
        result.headline.append("no CUDA device on this machine")
        result.body = ("Not run: this machine has no CUDA device, and the kernel suite times GPU kernels only. "
                       "No numbers are reported for it; the Triton kernels' correctness is covered by the tests "
                       "(`TRITON_INTERPRET=1`), not by this report.")
        return
    from longctx.benchmarks import kernels_bench

    out = RESULTS / "kernels"
    code = kernels_bench.main(["--sizes", "8192,16384", "--warmup", "1", "--iters", "3", "--out", str(out)])
    if code:
        raise RuntimeError(f"kernels_bench exited with {code}")
    latest = max(out.glob("*.json"), key=lambda p: p.stat().st_mtime)
    result.body = f"Quick GPU run ({torch.cuda.get_device_name()}): `{latest.relative_to(RESULTS)}`."


def _generic(module_name: str) -> Callable[[SuiteResult], None]:
    """Any other suite: its ``main(["--quick"])``; a suite whose parser has no --quick is not run."""
    def run(result: SuiteResult) -> None:
        import importlib

        main = importlib.import_module(module_name).main
        try:
            code = main(["--quick"])
        except SystemExit as error:
            if error.code != 2:  # argparse's usage error: this suite has no quick mode
                raise
            result.status = "not run"
            result.headline.append("no --quick mode")
            result.body = (f"Not run: `{module_name}` has no quick mode (its parser rejects --quick); "
                           f"run `longctx bench {result.name}` for its numbers.")
            return
        if code:
            raise RuntimeError(f"{module_name}.main(['--quick']) exited with {code}")
        result.body = f"`{module_name}` ran in its quick mode; see its own output under benchmarks/results/."
    return run


RENDERERS: dict[str, Callable[[SuiteResult], None]] = {
    "scheduler": _scheduler, "attention": _attention, "train": _train, "kernels": _kernels,
}


def run_suite(name: str, module_name: str) -> SuiteResult:
    """Run one suite in its quick mode; a failure becomes the result's status and body."""
    result = SuiteResult(name)
    started = time.perf_counter()
    try:
        RENDERERS.get(name, _generic(module_name))(result)
    except (Exception, SystemExit) as error:  # noqa: BLE001 - one failing suite must not hide the others
        result.status = "FAILED"
        result.headline = [f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"]
        result.body = f"```\n{traceback.format_exc()[-3000:]}```"
    result.wall_s = time.perf_counter() - started
    print(f"bench {name}: {result.status} in {result.wall_s:.0f} s", flush=True)
    return result


def render(results: list[SuiteResult], header: dict, wall_s: float) -> str:
    """The report's markdown."""
    machine = header["machine"]
    lines = ["# longctx benchmark report (quick mode)", "",
             f"Command: `{header['command']}` — commit `{header['commit'][:12]}` — {header['created_utc']} — "
             f"{wall_s / 60:.1f} min in all.",
             f"Machine: {machine['cpu']}, {machine['cpus']} CPUs, {machine['platform']}, load average (1 min) "
             f"at the start {machine['load_average_1m']:.1f}. Versions: "
             + ", ".join(f"{k} {v}" for k, v in header["versions"].items()) + ".", "",
             "Every ratio below is measured inside one run of its suite, the compared configurations side by "
             "side. Quick mode: few steps and repeats, so expect noise of several percent on a shared machine.", "",
             "| suite | status | wall s | headline (this run) |", "|---|---|---:|---|"]
    for r in results:
        lines.append(f"| {r.name} | {r.status} | {r.wall_s:.0f} | {'; '.join(r.headline)} |")
    for r in results:
        lines += ["", f"## {r.name}", "", r.body]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    from longctx.benchmarks.cli import SUITES
    from longctx.profiling.provenance import provenance
    from longctx.scheduler.cli import write_atomically

    parser = argparse.ArgumentParser(prog="longctx bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--suites", nargs="+", choices=sorted(SUITES), default=list(SUITES),
                        help="suites to run (default all)")
    parser.add_argument("--out", type=Path, default=REPORT, help="report file (default benchmarks/results/REPORT.md)")
    args = parser.parse_args(argv)
    header = provenance("longctx bench " + " ".join(argv))
    started = time.perf_counter()
    results = [run_suite(name, SUITES[name]) for name in args.suites]
    text = render(results, header, time.perf_counter() - started)
    write_atomically(args.out, text)
    print(f"wrote {args.out}")
    return 1 if any(r.status == "FAILED" for r in results) else 0
