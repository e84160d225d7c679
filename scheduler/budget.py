"""The planner's time budget: a wall-clock deadline for one `plan_step`, preparation included.

`Budget(time_limit_s)` starts counting when made (`plan_step` makes it first
thing). Stages ask `expired()` before they start and give the MILP
`solver_limit_s()`; a stage skipped for lack of time is recorded in `skipped`
so the plan's notes say so. `time_limit_s=None` means no wall-clock limit:
only the deterministic work limits bound the search (see `planner.py`).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

#: the least time (s) the MILP is given when it runs at all
MIN_SOLVER_S = 0.05


@dataclass
class Budget:
    time_limit_s: float | None
    started: float = field(default_factory=time.perf_counter)
    skipped: list[str] = field(default_factory=list)

    def left_s(self) -> float:
        """Seconds left (inf without a limit)."""
        if self.time_limit_s is None:
            return float("inf")
        return self.time_limit_s - (time.perf_counter() - self.started)

    def expired(self, stage: str | None = None) -> bool:
        """True when no time is left; records `stage` as skipped then."""
        out = self.left_s() <= 0
        if out and stage is not None:
            self.skipped.append(stage)
        return out

    def solver_limit_s(self) -> float | None:
        """Wall-clock limit for a solver call: the time left (at least MIN_SOLVER_S), None without a limit."""
        left = self.left_s()
        return None if left == float("inf") else max(left, MIN_SOLVER_S)
