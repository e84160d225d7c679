"""`longctx memory`: the report, its exit codes, the max-sequence table, bad input; never imports torch."""
from __future__ import annotations

import json
import subprocess
import sys

from longctx.scheduler.memory_cli import main


def test_report_json_says_fits_and_sums_the_breakdown(capsys):
    code = main(["--model", "llama3-8b", "--tokens", "131072", "--ranks", "8", "--gpu-gb", "80", "--json",
                 "memory.optimizer_sharding=zero2"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["fits"] and report["tokens_per_rank"] == 16384
    assert abs(sum(report["device_gb"].values()) - report["peak_gb"]) < 1e-6
    assert report["memory"]["optimizer_sharding"] == "zero2"
    assert report["max_tokens_per_rank"] >= 16384


def test_too_long_does_not_fit_and_exits_1(capsys):
    assert main(["--model", "llama3-8b", "--tokens", "1048576", "--ranks", "1"]) == 1
    assert "DOES NOT FIT" in capsys.readouterr().out


def test_bad_override_names_the_key(capsys):
    assert main(["memory.optimizer_sharding=zero3"]) == 2
    assert "memory.optimizer_sharding='zero3'" in capsys.readouterr().err


def test_max_table_rows_and_no_torch_import():
    script = ("import sys; from longctx.scheduler.memory_cli import main; code = main(['--max-table', '--json']); "
              "assert 'torch' not in sys.modules, 'longctx memory imported torch'; sys.exit(code)")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert [(r["model"], r["gpus"]) for r in rows] == [(m, g) for m in ("llama3-8b", "llama3-70b") for g in (1, 8, 64)]
    eight = [r["max_sequence_tokens"] for r in rows if r["model"] == "llama3-8b"]
    assert eight[0] > 0 and eight == sorted(eight)
