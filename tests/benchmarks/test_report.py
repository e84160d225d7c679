"""`longctx bench` report: rendering, a failing suite reported (not fatal), prediction errors of bench train."""
import pytest

from longctx.benchmarks import report, train_bench
from longctx.benchmarks.cli import main as bench_main

HEADER = {"command": "longctx bench", "commit": "0123456789abcdef", "created_utc": "2026-01-01T00:00:00Z",
          "machine": {"cpu": "test cpu", "cpus": 2, "platform": "linux", "load_average_1m": 1.0},
          "versions": {"python": "3.11", "torch": "2.13.0"}}


def test_render_has_one_row_and_one_section_per_suite():
    results = [report.SuiteResult("scheduler", "ok", 12.0, ["x static balanced: median 1.3"], "TABLE-S"),
               report.SuiteResult("kernels", "not run", 0.5, ["no CUDA device on this machine"], "NOT RUN")]
    text = report.render(results, HEADER, 60.0)
    assert "| scheduler | ok | 12 | x static balanced: median 1.3 |" in text
    assert "| kernels | not run | 0 | no CUDA device on this machine |" in text
    assert text.index("## scheduler") < text.index("TABLE-S") < text.index("## kernels") < text.index("NOT RUN")
    assert "`longctx bench`" in text and "test cpu" in text


def test_a_failing_suite_is_reported_and_does_not_raise():
    result = report.run_suite("nosuch", "longctx.benchmarks.no_such_module")
    assert result.status == "FAILED"
    assert "ModuleNotFoundError" in result.headline[0] and "no_such_module" in result.body


def test_prediction_errors_median_and_worst():
    steps = [{"predicted_step_ms": p, "step_time_ms": m} for p, m in ((90, 100), (130, 100), (100, 100))]
    errors = train_bench.prediction_errors(steps)
    assert errors["median"] == pytest.approx(0.1) and errors["worst"] == pytest.approx(0.3)
    assert errors["steps"] == 3 and errors["measured_ms"] == [100, 100, 100]


def test_bench_help_mentions_the_report(capsys):
    assert bench_main(["--help"]) == 0
    assert "REPORT.md" in capsys.readouterr().out


def test_a_suite_without_quick_mode_is_not_run_and_says_so(tmp_path, monkeypatch):
    module = tmp_path / "no_quick_suite.py"
    module.write_text("import argparse\n\ndef main(argv):\n    argparse.ArgumentParser().parse_args(argv)\n    return 0\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    result = report.run_suite("noquick", "no_quick_suite")
    assert result.status == "not run" and "no --quick mode" in result.headline
