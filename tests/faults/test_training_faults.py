"""Real `longctx train` runs (2 ranks, tiny model): what a user sees when checkpoints rot and the loss blows up.

Two runs share one directory. The first trains 3 steps (a checkpoint after each).
Then 256 bytes of step_3's largest shard are flipped and step_2's largest shard
is cut in half, and the second run resumes with train.steps=5 and optim.lr=1e30:
it must name both bad checkpoints, move them aside, resume from step_1 and say
so (stdout and tracker), record the lr/steps change and apply it, and stop with
exit 3 and a one-line message when the huge lr makes the loss or gradients
non-finite (step 3), before that step's optimizer step and checkpoint. No
metrics file may hold NaN. Slow (two real 2-rank runs, ~1-3 min on a loaded
2-core machine); the same cases run in-process in the fast suite
(test_checkpoint_faults, test_nonfinite_faults, test_run_dir_faults).
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from longctx.runtime.checkpoint_files import CHECKSUMS
from longctx.runtime.run_dir import CONFIG_HISTORY
from longctx.runtime.run_lock import LOCK_FILE
from tests.runtime.conftest import tiny_overrides

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


@dataclass
class Runs:
    output_dir: Path
    first: subprocess.CompletedProcess
    second: subprocess.CompletedProcess
    #: final_metrics.json and the checkpoints' checksum files as the first run left them
    first_final: str
    first_checksums: list[str]
    #: the shards flipped (in step_3) and cut (in step_2)
    flipped: str
    cut: str


def _train(dataset: str, output_dir: Path, *overrides: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "longctx.cli", "train",
               *tiny_overrides(dataset, output_dir, "parallel.nprocs=2", "parallel.max_tokens_per_rank=null",
                               "parallel.planner=greedy", "tracker=jsonl",
                               "train.checkpoint_every=1",
                               "train.keep_checkpoints=3", *overrides)]
    return subprocess.run(command, capture_output=True, text=True, timeout=500)


def _strict(text: str):
    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")
    return json.loads(text, parse_constant=refuse)


def _largest_shard(step_dir: Path) -> Path:
    return max(step_dir.glob("*.distcp"), key=lambda p: p.stat().st_size)


@pytest.fixture(scope="module")
def runs(tiny_dataset, tmp_path_factory) -> Runs:
    """Both runs, with the corruption described in the module docstring in between."""
    output_dir = tmp_path_factory.mktemp("faults-train") / "run"
    first = _train(tiny_dataset, output_dir, "train.steps=3")
    assert first.returncode == 0, first.stderr[-3000:]
    root = output_dir / "checkpoints"
    first_final = (output_dir / "final_metrics.json").read_text()
    checksums = sorted(str(p.relative_to(root)) for p in root.glob(f"*/{CHECKSUMS}"))
    flipped = _largest_shard(root / "step_3")
    data = bytearray(flipped.read_bytes())
    for i in range(len(data) // 2, len(data) // 2 + 256):
        data[i] ^= 0xFF
    flipped.write_bytes(bytes(data))
    cut = _largest_shard(root / "step_2")
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])
    second = _train(tiny_dataset, output_dir, "train.steps=5", "optim.lr=1e30")
    return Runs(output_dir, first, second, first_final, checksums, flipped.name, cut.name)


def test_first_run_writes_checksummed_checkpoints_and_strict_json(runs):
    assert _strict(runs.first_final)["step"] == 3
    assert runs.first_checksums == [f"step_{s}/{CHECKSUMS}" for s in (1, 2, 3)]
    assert "resuming" not in runs.first.stdout


def test_corrupt_checkpoints_are_named_moved_aside_and_resume_falls_back(runs):
    output_dir, flipped, cut = runs.output_dir, runs.flipped, runs.cut
    root = output_dir / "checkpoints"
    out = runs.second.stdout
    assert (f"checkpoint {root / 'step_3'} is corrupt: file {flipped} has a different SHA-256 than when it was "
            f"written (bytes changed); moved it aside to {root / 'corrupt-step_3'}") in out, out
    assert f"checkpoint {root / 'step_2'} is corrupt: file {cut} has" in out and "(truncated or grown)" in out
    assert f"resuming from {root / 'step_1'} (the newest good checkpoint)" in out
    assert (root / "corrupt-step_2").is_dir() and (root / "corrupt-step_3").is_dir()
    metrics = [_strict(line) for line in (output_dir / "metrics.jsonl").read_text().splitlines()]
    resumed = [m for m in metrics if "resumed_from_step" in m]
    assert [(m["step"], m["resumed_from_step"]) for m in resumed] == [(2, 1.0)]
    assert resumed[0]["lr"] > 1e29  # the changed optim.lr applies, not the checkpoint's


def test_resume_with_a_changed_lr_is_allowed_and_recorded(runs):
    output_dir, second = runs.output_dir, runs.second
    assert "config changed since the saved run" in second.stdout and "optim.lr: 0.003 -> 1e+30" in second.stdout
    history = [json.loads(line) for line in (output_dir / CONFIG_HISTORY).read_text().splitlines()]
    assert history[-1]["changes"] == {"optim.lr": [0.003, 1e30], "train.steps": [3, 5]}


def test_a_non_finite_loss_stops_the_run_before_its_step_and_checkpoint(runs):
    output_dir, second = runs.output_dir, runs.second
    assert second.returncode == 3, second.stderr[-3000:]
    error_lines = [line for line in second.stderr.splitlines() if line.startswith("longctx train:")]
    assert len(error_lines) == 1 and "Traceback" not in second.stderr, second.stderr[-3000:]
    line = error_lines[0]
    assert re.match(r"longctx train: non-finite (loss|gradient norm) (nan|-?inf) on rank [01]\b", line), line
    assert " at step 3; stopped before the optimizer step 3, nothing of step 3 was saved" in line
    root = output_dir / "checkpoints"
    assert (root / "step_2" / CHECKSUMS).is_file() and not (root / "step_3").exists()
    metrics = [_strict(line) for line in (output_dir / "metrics.jsonl").read_text().splitlines()]
    second_run = metrics[next(i for i, m in enumerate(metrics) if "resumed_from_step" in m):]
    assert [m["step"] for m in second_run] == [2]  # step 3 stopped before it was logged
    assert not (output_dir / LOCK_FILE).exists()
