"""The Tracker interface every adapter implements."""
from __future__ import annotations

import operator
from typing import Protocol


class Tracker(Protocol):
    """Receives one dict of scalar metrics per step; ``finish`` flushes and closes."""

    def log(self, metrics: dict[str, float], step: int) -> None: ...

    def finish(self) -> None: ...


def checked_scalars(metrics: dict[str, float], step: int) -> dict[str, float]:
    """``metrics`` with every value as a Python float, after checking ``step`` and the keys."""
    if isinstance(step, bool) or not hasattr(step, "__index__") or operator.index(step) < 0:
        raise ValueError(f"tracker.log: step={step!r} must be a non-negative integer")
    if "step" in metrics:
        raise ValueError("tracker.log: metrics must not contain the key 'step'; pass the step as the step argument")
    scalars = {}
    for key, value in metrics.items():
        try:
            scalars[key] = float(value)
        except (TypeError, ValueError) as error:
            raise TypeError(f"tracker.log: metric {key!r}={value!r} is not a number; log scalars only") from error
    return scalars
