"""Weights & Biases tracker: offline by default, resumable across requeued jobs."""
from __future__ import annotations

import hashlib
import operator
import os
from typing import Any

from longctx.tracking.base import checked_scalars

#: The wandb project every longctx run logs to.
PROJECT = "longctx"


def run_id_for(output_dir: str) -> str:
    """The wandb run id of ``output_dir``: first 12 hex digits of sha1(its real absolute path).

    A restarted or requeued job with the same output directory gets the same id
    and (with ``resume="allow"``) continues the same run.
    """
    return hashlib.sha1(os.path.realpath(output_dir).encode("utf-8")).hexdigest()[:12]


class WandbTracker:
    """Logs to a wandb run whose files live in ``<output_dir>/wandb/``.

    ``mode="offline"`` needs no network or account (upload later with
    ``wandb sync <output_dir>/wandb/offline-run-*``); ``mode="online"`` streams
    to the server and needs a login. wandb's console capture and banner are off,
    so the training log stays the trainer's own.
    """

    def __init__(self, output_dir: str, run_name: str, config: dict[str, Any], mode: str) -> None:
        try:
            import wandb
        except ImportError as error:
            raise ImportError(
                "make_tracker: tracker 'wandb' needs the 'wandb' package, which is not installed; "
                "`pip install longctx[wandb]`, or choose tracker 'jsonl' or 'none'"
            ) from error
        os.makedirs(output_dir, exist_ok=True)
        self.run = wandb.init(
            project=PROJECT,
            name=run_name,
            id=run_id_for(output_dir),
            resume="allow",
            dir=output_dir,
            mode=mode,
            config=config,
            settings=wandb.Settings(silent=True, console="off"),
        )

    def log(self, metrics: dict[str, float], step: int) -> None:
        """Log ``metrics`` at ``step`` (steps must not decrease within one process)."""
        self.run.log(checked_scalars(metrics, step), step=operator.index(step))

    def finish(self) -> None:
        """Close the run and wait until it is on disk.

        `run.finish()` returns before wandb's service process has written the
        last records of an offline run; `wandb.teardown()` waits for that
        service to flush and exit, so a reader (or a job that ends right after)
        sees every logged step.
        """
        import wandb

        self.run.finish()
        wandb.teardown()
