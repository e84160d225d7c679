"""The planner's time budget: a wall-clock deadline for one `plan_step`, preparation included.

`Budget(time_limit_s)` starts counting when made (`plan_step` makes it first
thing). Stages ask `affords(stage, cost_s)` (or `expired(stage)`) before they
start and give a solver `solver_limit_s(keep_s)`; a stage skipped for lack of
time is recorded in `skipped` so the plan's notes say so. `reserve_s` is kept
back for finishing the plan (building, timing and checking it): the planner
sets it from what its first plan cost, so the stages stop early enough on a
slow or busy machine too. `time_limit_s=None` means no wall-clock limit: every
stage runs and only the deterministic work limits bound the search (see
`planner.py`).
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
    #: seconds kept back for finishing the plan (`left_s` excludes them)
    reserve_s: float = 0.0

    def elapsed_s(self) -> float:
        return time.perf_counter() - self.started

    def left_s(self) -> float:
        """Seconds left for stages, the reserve excluded (inf without a limit)."""
        if self.time_limit_s is None:
            return float("inf")
        return self.time_limit_s - self.elapsed_s() - self.reserve_s

    def affords(self, stage: str, cost_s: float) -> bool:
        """True when at least `cost_s` (an estimate of the stage's time) is left; else records `stage` as
        skipped. Always true without a limit."""
        out = self.left_s() >= cost_s
        if not out:
            self.skipped.append(stage)
        return out

    def expired(self, stage: str | None = None) -> bool:
        """True when no time is left; records `stage` as skipped then."""
        out = self.left_s() <= 0
        if out and stage is not None:
            self.skipped.append(stage)
        return out

    def solver_limit_s(self, keep_s: float = 0.0) -> float | None:
        """Wall-clock limit for a solver call: the time left less `keep_s` (what must still run after it),
        at least MIN_SOLVER_S; None without a limit."""
        left = self.left_s()
        return None if left == float("inf") else max(left - keep_s, MIN_SOLVER_S)
