"""Workload samplers and packing, the `longctx plan` CLI, the quick benchmark, and no torch."""
import json
import subprocess
import sys

import numpy as np
import pytest

from longctx.benchmarks import scheduler_bench
from longctx.scheduler import Plan, SchedulerInputError
from longctx.scheduler.cli import plan_main
from longctx.scheduler.workloads import document_stream, pack_steps, read_lengths_file, web_text_lengths


def test_web_sampler_matches_the_published_statistics():
    x = web_text_lengths(np.random.default_rng(0), 200_000).astype(float)
    big = x > 8192
    assert 300 < np.median(x) < 400, np.median(x)
    assert 900 < x.mean() < 1150, x.mean()
    assert 0.013 < big.mean() < 0.019, big.mean()
    assert 0.22 < x[big].sum() / x.sum() < 0.33
    assert x.max() <= 1_800_000


def test_packing_fills_each_step_exactly_in_arrival_order():
    steps = pack_steps(iter([5, 7, 20, 3]), tokens_per_step=10, num_steps=3, max_sequence_length=8)
    assert steps == [[5, 5], [2, 8], [8, 2]]
    assert all(sum(step) == 10 for step in steps)
    with pytest.raises(SchedulerInputError, match="tokens_per_step=0"):
        pack_steps(iter([1]), 0, 1, 8)
    with pytest.raises(SchedulerInputError, match="workload='books'"):
        next(document_stream("books", 0))


@pytest.mark.parametrize("text,message", [("10\n2.5\n", "line 2: '2.5' is not a whole number"),
                                          ("10\n0\n", "line 2: 0 must be at least 1"), ("# only\n", "holds no lengths")])
def test_lengths_file_errors_name_the_line(tmp_path, text, message):
    path = tmp_path / "l.txt"
    path.write_text(text)
    with pytest.raises(SchedulerInputError, match=message):
        read_lengths_file(path)


def test_plan_cli_writes_json_and_prints_a_table(tmp_path, capsys):
    lengths = tmp_path / "l.txt"
    lengths.write_text("1000\n# a comment\n20000\n300\n70000\n")
    out = tmp_path / "sub" / "plan.json"
    assert plan_main(["--lengths", str(lengths), "--ranks", "8", "--out", str(out)]) == 0
    plan = Plan.from_json(out.read_text()).validate()
    assert plan.lengths == [1000, 20000, 300, 70000]
    printed = capsys.readouterr().out
    assert "lower bound" in printed and ("ulysses" in printed or "ring" in printed), printed


@pytest.mark.parametrize("args,message", [
    (["--ranks", "12"], "num_ranks=12"),
    (["--ranks", "8", "--memory-gb", "0"], None),
    (["--ranks", "8", "--lengths-extra"], None),
])
def test_plan_cli_bad_input_writes_nothing(tmp_path, capsys, args, message):
    lengths = tmp_path / "l.txt"
    lengths.write_text("100\n")
    out = tmp_path / "plan.json"
    if message is None:
        with pytest.raises(SystemExit):
            plan_main(["--lengths", str(lengths), "--out", str(out), *args])
    else:
        assert plan_main(["--lengths", str(lengths), "--out", str(out), *args]) == 2
        assert message in capsys.readouterr().err
    assert not out.exists()


def test_plan_cli_rejects_a_sequence_too_long_for_the_cluster(tmp_path, capsys):
    lengths = tmp_path / "l.txt"
    lengths.write_text("100\n5000000\n")
    out = tmp_path / "plan.json"
    assert plan_main(["--lengths", str(lengths), "--ranks", "8", "--out", str(out)]) == 2
    assert "cannot fit even on the whole cluster" in capsys.readouterr().err
    assert not out.exists()


def test_scheduler_never_imports_torch():
    code = (
        "import sys, pkgutil, importlib, longctx.scheduler as s\n"
        "for m in pkgutil.iter_modules(s.__path__): importlib.import_module('longctx.scheduler.' + m.name)\n"
        "import longctx.benchmarks.scheduler_bench\n"
        "print('torch' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False", result.stdout


def test_bench_scheduler_quick(tmp_path):
    summary = scheduler_bench.run_quick(tmp_path)
    data = json.loads((tmp_path / "scheduler_quick.json").read_text())
    records = data["records"]
    assert {r["method"] for r in records} == set(scheduler_bench.METHODS)
    assert {r["ranks"] for r in records} == {8, 64}
    assert {r["workload"] for r in records} == set(scheduler_bench.WORKLOADS)
    for r in records:
        assert {"workload", "ranks", "tokens_per_step", "method", "step_time_ms", "lower_bound_ms",
                "solve_time_s", "commit", "versions"} <= set(r)
        assert r["lower_bound_ms"] <= r["step_time_ms"] * (1 + 1e-9), r
    for row in summary["summary"]:  # the full planner has static and megatron-core among its candidates
        assert row["x_static-balanced"] >= 1 - 1e-9 and row["x_megatron-balanced-cp"] >= 1 - 1e-9, row
    assert "x megatron" in summary["markdown"] and "Solve times" in summary["markdown"]
    assert (tmp_path / "scheduler_quick.png").stat().st_size > 10_000
