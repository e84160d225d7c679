"""Tracker that appends one JSON object per logged step to ``<output_dir>/metrics.jsonl``."""
from __future__ import annotations

import operator
import os

from longctx.tracking import strict_json
from longctx.tracking.base import checked_scalars


class JsonlTracker:
    """Appends ``{"step": step, **metrics}`` lines (strict JSON: a non-finite value is null); a resumed run
    appends to the same file.

    After a resume, steps between the last checkpoint and the interruption can
    appear twice; readers should keep the last line per step.
    """

    FILENAME = "metrics.jsonl"

    def __init__(self, output_dir: str) -> None:
        os.makedirs(output_dir, exist_ok=True)
        self.path = os.path.join(output_dir, self.FILENAME)
        self._file = open(self.path, "a", encoding="utf-8")

    def log(self, metrics: dict[str, float], step: int) -> None:
        """Write one line and flush it, so the file is current even if the job is killed."""
        scalars = checked_scalars(metrics, step)
        self._file.write(strict_json.dumps({"step": operator.index(step), **scalars}) + "\n")
        self._file.flush()

    def finish(self) -> None:
        """Close the file (idempotent)."""
        self._file.close()

