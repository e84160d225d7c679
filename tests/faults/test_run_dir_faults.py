"""Run-directory faults, each through `longctx train`'s real entry point (`main`), stopped before any rank starts.

Cases (issue 11): two runs on one directory; a stale lock; resume=never over an
earlier run's checkpoints (error / archive / overwrite); resume with a changed
model (refused before anything is written) or a changed lr (allowed, recorded);
an output_dir that is a file or cannot be written; a cost profile that does not load.
"""
from __future__ import annotations

import json
import os
import signal
import socket

import pytest

from longctx.runtime.config import ConfigError
from longctx.runtime.run_dir import CONFIG_HISTORY, prepare_run_dir
from longctx.runtime.run_lock import LOCK_FILE, RunLock
from longctx.runtime.train_cli import compose_run_config, main
from tests.runtime.conftest import tiny_overrides

#: the embedded default corpus: nothing to ingest, and these runs never start a rank
NO_DATASET = "null"


def _main(capsys, argv: list[str]) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _one_line(err: str) -> str:
    """The single line of an error report (no traceback)."""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def _fake_checkpoint(output_dir, step: int) -> None:
    """An earlier run's checkpoint directory (contents do not matter to the run-directory checks)."""
    path = output_dir / "checkpoints" / f"step_{step}"
    path.mkdir(parents=True)
    (path / ".metadata").write_bytes(b"x")


def test_a_second_run_on_a_locked_directory_exits_2_naming_the_holder(tmp_path, lock_holder, capsys):
    output_dir = tmp_path / "run"
    holder = lock_holder(output_dir)
    code, _, err = _main(capsys, tiny_overrides(NO_DATASET, output_dir))
    line = _one_line(err)
    assert code == 2
    assert f"pid {holder.pid} on host {socket.gethostname()}" in line and "in use by a running longctx train" in line
    assert not (output_dir / "config.yaml").exists()


def test_a_stale_lock_is_taken_over_and_reported(tmp_path, lock_holder):
    holder = lock_holder(tmp_path)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    lock = RunLock(tmp_path)
    stale = lock.acquire()
    assert stale is not None and stale.pid == holder.pid and stale.host == socket.gethostname()
    assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == os.getpid()
    with pytest.raises(RuntimeError, match=f"pid {os.getpid()} on host"):
        RunLock(tmp_path).acquire()  # a second lock in this very process is refused too (flock per open file)
    lock.release()
    assert not (tmp_path / LOCK_FILE).exists()


def test_a_stale_lock_is_reported_by_longctx_train(tmp_path, lock_holder, capsys):
    holder = lock_holder(tmp_path)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    _fake_checkpoint(tmp_path, 2)  # stop the run after the lock (resume=never refuses the directory)
    code, out, err = _main(capsys, tiny_overrides(NO_DATASET, tmp_path, "train.resume=never"))
    assert code == 2 and "holds checkpoints of an earlier run" in _one_line(err)
    assert out.startswith(f"longctx train: took over a stale lock of pid {holder.pid} on host {socket.gethostname()}")


def test_resume_never_into_a_directory_with_checkpoints_is_refused(tmp_path, capsys):
    _fake_checkpoint(tmp_path, 2)
    code, _, err = _main(capsys, tiny_overrides(NO_DATASET, tmp_path, "train.resume=never"))
    line = _one_line(err)
    assert code == 2
    assert "holds checkpoints of an earlier run (step_2" in line and "train.on_existing=archive" in line
    assert (tmp_path / "checkpoints" / "step_2" / ".metadata").is_file() and not (tmp_path / "config.yaml").exists()
    assert not (tmp_path / LOCK_FILE).exists()  # the refused run released its lock


@pytest.mark.parametrize("mode", ["archive", "overwrite"])
def test_on_existing_archives_or_deletes_the_earlier_run(tmp_path, mode):
    _fake_checkpoint(tmp_path, 2)
    (tmp_path / "metrics.jsonl").write_text('{"step": 1}\n')
    (tmp_path / "notes.txt").write_text("the user's own file")
    messages = prepare_run_dir(compose_run_config(tiny_overrides(NO_DATASET, tmp_path, "train.resume=never",
                                                                 f"train.on_existing={mode}")))
    assert not (tmp_path / "checkpoints").exists() and not (tmp_path / "metrics.jsonl").exists()
    assert (tmp_path / "notes.txt").read_text() == "the user's own file" and (tmp_path / "config.yaml").is_file()
    archives = list(tmp_path.glob("archive-*"))
    if mode == "archive":
        assert len(archives) == 1 and (archives[0] / "checkpoints" / "step_2" / ".metadata").is_file()
        assert (archives[0] / "metrics.jsonl").is_file() and str(archives[0]) in messages[0]
    else:
        assert archives == [] and "deleted the earlier run's files" in messages[0]


def test_resume_with_a_changed_model_stops_before_anything_is_written(tmp_path, capsys):
    prepare_run_dir(compose_run_config(tiny_overrides(NO_DATASET, tmp_path)))
    _fake_checkpoint(tmp_path, 4)
    saved = (tmp_path / "config.yaml").read_bytes()
    code, _, err = _main(capsys, tiny_overrides(NO_DATASET, tmp_path, "model.dim=32", "data.seed=5", "optim.lr=1e-3"))
    line = _one_line(err)
    assert code == 2
    assert "model.dim: 64 -> 32" in line and "data.seed: 0 -> 5" in line and "optim.lr" not in line
    assert (tmp_path / "config.yaml").read_bytes() == saved and not (tmp_path / CONFIG_HISTORY).exists()


def test_resume_with_a_changed_lr_and_steps_is_allowed_and_recorded(tmp_path):
    prepare_run_dir(compose_run_config(tiny_overrides(NO_DATASET, tmp_path)))
    _fake_checkpoint(tmp_path, 4)
    run = compose_run_config(tiny_overrides(NO_DATASET, tmp_path, "optim.lr=1e-3", "train.steps=8"))
    messages = prepare_run_dir(run)
    assert len(messages) == 1 and "optim.lr: 0.003 -> 0.001" in messages[0] and "train.steps: 4 -> 8" in messages[0]
    history = [json.loads(line) for line in (tmp_path / CONFIG_HISTORY).read_text().splitlines()]
    assert len(history) == 1 and history[0]["changes"] == {"optim.lr": [0.003, 0.001], "train.steps": [4, 8]}
    assert prepare_run_dir(run) == []  # idempotent: the launcher and rank 0 both call it
    assert "lr: 0.001" in (tmp_path / "config.yaml").read_text()


def test_an_output_dir_that_is_a_file_fails_before_any_process_starts(tmp_path, capsys):
    target = tmp_path / "run"
    target.write_text("not a directory")
    code, _, err = _main(capsys, tiny_overrides(NO_DATASET, target))
    assert code == 2 and "is a file, not a directory" in _one_line(err)
    assert target.read_text() == "not a directory"


@pytest.mark.parametrize("where", ["proc", "under-a-file"])
def test_an_output_dir_that_cannot_be_written_fails_before_any_process_starts(tmp_path, capsys, where):
    # tests run as root, for whom permission bits do not stop a write: use places nobody can write
    if where == "proc":
        target = "/proc/longctx-fault-run"
    else:
        (tmp_path / "file").write_text("")
        target = tmp_path / "file" / "run"
    code, _, err = _main(capsys, tiny_overrides(NO_DATASET, target))
    assert code == 2 and f"train.output_dir='{target}' cannot be written" in _one_line(err)


def test_a_cost_profile_that_does_not_load_fails_before_any_process_starts(tmp_path, capsys):
    profile = tmp_path / "profile.yaml"
    profile.write_text("{ this is: [not yaml")
    code, _, err = _main(capsys, tiny_overrides(NO_DATASET, tmp_path / "run", f"parallel.cost_profile={profile}"))
    line = _one_line(err)
    assert code == 2 and f"parallel.cost_profile='{profile}'" in line and "is not valid YAML" in line


def test_prepare_refuses_with_a_config_error_when_called_directly(tmp_path):
    _fake_checkpoint(tmp_path, 1)
    with pytest.raises(ConfigError, match="train.resume=never"):
        prepare_run_dir(compose_run_config(tiny_overrides(NO_DATASET, tmp_path, "train.resume=never")))
