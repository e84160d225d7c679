"""make_tracker validates its arguments; jsonl appends one object per step; none drops everything."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from longctx.tracking import JsonlTracker, NoneTracker, make_tracker


def _jsonl(tmp_path):
    return make_tracker("jsonl", output_dir=str(tmp_path), run_name="r", config={})


def test_jsonl_appends_one_object_per_step_and_a_restart_appends_to_the_same_file(tmp_path):
    tracker = _jsonl(tmp_path)
    assert isinstance(tracker, JsonlTracker)
    tracker.log({"loss": torch.tensor(2.5), "tokens_per_s": np.float32(1000.0)}, step=np.int64(0))
    tracker.log({"loss": 2.0}, step=1)
    tracker.finish()
    restarted = _jsonl(tmp_path)
    restarted.log({"loss": 1.5, "grad_norm": 0.25}, step=2)
    restarted.finish()
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == [
        {"step": 0, "loss": 2.5, "tokens_per_s": 1000.0},
        {"step": 1, "loss": 2.0},
        {"step": 2, "loss": 1.5, "grad_norm": 0.25},
    ]


@pytest.mark.parametrize(
    ("metrics", "step", "error", "match"),
    [
        ({"loss": "high"}, 0, TypeError, "metric 'loss'='high' is not a number"),
        ({"loss": 1.0}, -1, ValueError, "step=-1"),
        ({"loss": 1.0}, 1.5, ValueError, "step=1.5"),
        ({"step": 3.0}, 3, ValueError, "key 'step'"),
    ],
)
def test_jsonl_rejects_bad_metrics_without_writing(tmp_path, metrics, step, error, match):
    tracker = _jsonl(tmp_path)
    with pytest.raises(error, match=match):
        tracker.log(metrics, step=step)
    tracker.finish()
    assert (tmp_path / "metrics.jsonl").read_text() == ""


def test_none_tracker_writes_nothing(tmp_path):
    tracker = make_tracker("none", output_dir=str(tmp_path / "out"), run_name="r", config={})
    assert isinstance(tracker, NoneTracker)
    tracker.log({"loss": 1.0}, step=0)
    tracker.finish()
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("kind", "mode", "match"),
    [("tensorboard", "offline", "kind='tensorboard' is unknown; choose one of"), ("wandb", "cloud", "mode='cloud' is unknown")],
)
def test_make_tracker_rejects_unknown_kind_and_mode(tmp_path, kind, mode, match):
    with pytest.raises(ValueError, match=match):
        make_tracker(kind, output_dir=str(tmp_path), run_name="r", config={}, mode=mode)
