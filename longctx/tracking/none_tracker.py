"""The tracker that records nothing (``tracker=none``, and every rank but 0)."""
from __future__ import annotations


class NoneTracker:
    """Accepts metrics and drops them."""

    def log(self, metrics: dict[str, float], step: int) -> None:
        """Drop ``metrics``."""

    def finish(self) -> None:
        """Nothing to close."""
