"""Trackers: where the trainer's per-step metrics go.

``make_tracker("wandb" | "jsonl" | "none", ...)`` returns an object with
``log(metrics, step)`` and ``finish()``. Create it on rank 0 only and give the
other ranks ``"none"``.
"""
from __future__ import annotations

from typing import Any

from longctx.tracking.base import Tracker
from longctx.tracking.jsonl_tracker import JsonlTracker
from longctx.tracking.none_tracker import NoneTracker
from longctx.tracking.wandb_tracker import WandbTracker, run_id_for

TRACKER_KINDS = ("wandb", "jsonl", "none")
WANDB_MODES = ("offline", "online")


def make_tracker(kind: str, *, output_dir: str, run_name: str, config: dict[str, Any], mode: str = "offline") -> Tracker:
    """Return the tracker ``kind`` for a run writing under ``output_dir``.

    ``wandb``: run files in ``<output_dir>/wandb/``, run id derived from
    ``output_dir`` so a restarted job continues the same run; ``mode`` is
    ``"offline"`` (default, no network) or ``"online"``.
    ``jsonl``: appends to ``<output_dir>/metrics.jsonl``. ``none``: drops everything.
    """
    if kind not in TRACKER_KINDS:
        raise ValueError(f"make_tracker: kind={kind!r} is unknown; choose one of {list(TRACKER_KINDS)}")
    if mode not in WANDB_MODES:
        raise ValueError(f"make_tracker: mode={mode!r} is unknown; choose one of {list(WANDB_MODES)}")
    if kind == "wandb":
        return WandbTracker(output_dir, run_name, config, mode)
    if kind == "jsonl":
        return JsonlTracker(output_dir)
    return NoneTracker()


__all__ = ["JsonlTracker", "NoneTracker", "Tracker", "WandbTracker", "make_tracker", "run_id_for", "TRACKER_KINDS", "WANDB_MODES"]
