"""`longctx train`: bad configs fail before any process starts; a tiny real run end to end."""
from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time

import pytest

from longctx.model import ModelConfigError
from longctx.runtime.config import ConfigError
from longctx.runtime.train_cli import compose_run_config, main


@pytest.mark.parametrize("overrides, message", [
    (["model=huge"], "Could not find 'model/huge'"),
    (["parallel=elastic"], "Could not find 'parallel/elastic'"),
    (["parallel.nprocx=2"], "Could not override 'parallel.nprocx'"),
    (["+parallel.nprocx=2"], "parallel.nprocx is not a setting of ParallelConfig"),
    (["parallel.nprocs=0"], "parallel.nprocs=0: the number of ranks must be an integer >= 1"),
    (["data.tokens_per_step=100", "data.max_doc_tokens=512"],
     "data.tokens_per_step=100 is below data.max_doc_tokens=512, the cap on the longest document piece"),
    (["data.path=/nonexistent/corpus"], "data.path='/nonexistent/corpus': ['/nonexistent/corpus.bin'"),
    (["model.n_heads=3"], "model.dim=64 is not divisible by model.n_heads=3"),
    (["model.n_kv_heads=3"], "model.n_heads=4 is not a multiple of model.n_kv_heads=3"),
    (["parallel=static", "parallel.cp=3"], "parallel.cp=3 does not divide the world size 4"),
    (["model.vocab_size=100"], "model.vocab_size=100 is below the tokenizer's vocabulary of 257"),
    (["parallel.max_tokens_per_rank=100"], "data.max_doc_tokens=2048 does not fit a group of 4 ranks"),
    (["train.on_existing=keep"], "train.on_existing='keep' is not supported; choose one of ['error', 'archive'"),
    (["train.keep_checkpoints=-1"], "train.keep_checkpoints=-1 must be an integer >= 0"),
])
def test_bad_configs_are_rejected_with_the_field_and_value(overrides, message):
    with pytest.raises((ConfigError, ModelConfigError), match=re.escape(message)):
        compose_run_config(overrides)


def test_a_bad_config_exits_2_before_any_process_starts(tmp_path, capsys):
    output_dir = tmp_path / "run"
    assert main(["parallel.nprocs=0", f"train.output_dir={output_dir}"]) == 2
    assert "parallel.nprocs=0" in capsys.readouterr().err
    assert not output_dir.exists()


def test_longctx_train_runs_end_to_end_with_the_wandb_offline_tracker(tiny_dataset, tmp_path):
    from tests.tracking.wandb_records import history_rows

    output_dir = tmp_path / "run"
    command = [sys.executable, "-m", "longctx.cli", "train", "experiment=smoke", f"data.path={tiny_dataset}",
               "parallel.nprocs=2", "train.steps=2", "tracker=wandb", f"train.output_dir={output_dir}"]
    finished = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr[-3000:]
    final = json.loads((output_dir / "final_metrics.json").read_text())
    assert final["step"] == 2 and final["loss"] > 0 and {"busy_s/rank1", "mfu", "plan_gap_to_bound"} <= set(final)
    assert (output_dir / "checkpoints" / "step_2" / ".metadata").is_file()
    assert "mode: dynamic" in (output_dir / "config.yaml").read_text()
    rows = [row for f in (output_dir / "wandb").glob("offline-run-*/run-*.wandb") for row in history_rows(f)]
    logged = {row["_step"]: row for row in rows if "loss" in row}
    assert sorted(logged) == [1, 2], rows
    assert logged[2]["loss"] == pytest.approx(final["loss"]) and logged[2]["tokens_per_s"] > 0
    assert not (output_dir / ".longctx.lock").exists()  # released at the end


def test_sigusr2_to_longctx_train_stops_all_ranks_after_a_checkpoint(tiny_dataset, tmp_path):
    output_dir = tmp_path / "run"
    command = [sys.executable, "-m", "longctx.cli", "train", "experiment=smoke", f"data.path={tiny_dataset}",
               "parallel.nprocs=2", "train.steps=50", "tracker=jsonl", f"train.output_dir={output_dir}"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = output_dir / "metrics.jsonl"
    deadline = time.monotonic() + 240
    while not (metrics.exists() and metrics.read_text().count("\n") >= 1) and time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[1][-3000:]
        time.sleep(0.2)
    process.send_signal(signal.SIGUSR2)
    _, stderr = process.communicate(timeout=240)
    assert process.returncode == 0, stderr[-3000:]
    stopped_at = int((output_dir / "PREEMPTED").read_text())
    assert 1 <= stopped_at < 50
    assert (output_dir / "checkpoints" / f"step_{stopped_at}" / ".metadata").is_file()
    assert not (output_dir / "final_metrics.json").exists()


def test_a_recipe_whose_required_key_is_unset_names_the_key(tmp_path, capsys):
    output_dir = tmp_path / "run"
    assert main(["experiment=extend_context", f"train.output_dir={output_dir}"]) == 2
    err = capsys.readouterr().err
    assert "model.hf_path is not set, but data.tokenizer refers to it" in err, err
    assert not output_dir.exists()
