"""The per-step time outside the waves, measured on a few real training steps.

A step's wall time is modelled as its plan's time under the measured shapes
plus one constant, `CostModel.step_overhead_ms`, the same for every plan: the
work outside the waves (taking the planned step from rank 0, gradient sum,
clipping, optimizer and LR step, gathering the metrics). It is measured by
running the real trainer (`longctx.runtime.trainer.train`, the run's own
config, planning with the measured shapes and no overhead, a scratch output
directory, no tracker, no checkpoints): per step ``step_time_ms - max over
ranks of busy_ms`` (the waves' wall time on the busiest rank); the constant is
the median over the steps after the first (the first pays allocator and
warm-up costs).

Why not the residual ``step_time_ms - predicted_step_ms`` (recorded too): it
also holds any change of the machine's load between the shape timings and
these steps. On the shared 2-core box it came out at 1.6 s on a 6 s step while
the time outside the waves was 22-113 ms, and the steps after it ran 40%
faster than the profile's waves: an additive constant fitted on load noise
mispredicts every later step. The waves are priced by the shapes alone, timed
with the trainer's own `memory.*` settings (`longctx.profiling.compute`).
"""
from __future__ import annotations

import shutil
import statistics
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import torch.distributed as dist

from longctx.runtime.config import RunConfig
from longctx.scheduler.cost_profile import CostProfile


@dataclass(frozen=True)
class StepOverhead:
    """The measured constant (ms) and its per-step samples (ms)."""

    overhead_ms: float
    #: per step: wall time - the plan's time under the measured shapes
    residual_ms: list[float]
    #: per step: wall time - the busiest rank's time inside the waves
    outside_waves_ms: list[float]

    def to_dict(self) -> dict:
        return {"step_overhead_ms": self.overhead_ms, "residual_samples_ms": self.residual_ms,
                "outside_waves_samples_ms": self.outside_waves_ms}


def outside_waves_ms(metrics: list[dict[str, float]], world: int) -> list[float]:
    """Per step: its wall time minus the busiest rank's time in the waves (ms)."""
    return [m["step_time_s"] * 1e3 - max(m[f"busy_s/rank{r}"] for r in range(world)) * 1e3 for m in metrics]


def measure_step_overhead(run: RunConfig, steps: int, shapes_only: CostProfile, scratch_root: Path) -> StepOverhead:
    """Measure the per-step constant on `steps` real training steps of `run` planned with `shapes_only`
    (a profile whose step overhead is 0); collective. `scratch_root`: a directory every rank sees."""
    from longctx.runtime.trainer import train

    if steps < 2:
        raise ValueError(f"measure_step_overhead: steps={steps} must be >= 2 (the first step is warm-up)")
    if shapes_only.cost_model.step_overhead_ms:
        raise ValueError("measure_step_overhead: plan with a profile whose step_overhead_ms is 0")
    scratch = [None]
    if dist.get_rank() == 0:
        scratch_root.mkdir(parents=True, exist_ok=True)
        scratch[0] = tempfile.mkdtemp(prefix=".longctx-profile-", dir=scratch_root)
        shapes_only.write(Path(scratch[0]) / "shapes_only.yaml")
    dist.broadcast_object_list(scratch, src=0)
    scratch_run = replace(
        run,
        parallel=replace(run.parallel, cost_profile=str(Path(scratch[0]) / "shapes_only.yaml")),
        train=replace(run.train, steps=steps, output_dir=str(Path(scratch[0]) / "run"), resume="never",
                      checkpoint_every=0, stop_after_steps=None, progress=False),
        optim=replace(run.optim, warmup_steps=min(run.optim.warmup_steps, steps)),
        tracker=replace(run.tracker, kind="none"),
    )
    try:
        metrics = train(scratch_run).metrics
    finally:
        dist.barrier()
        if dist.get_rank() == 0:
            shutil.rmtree(scratch[0], ignore_errors=True)
    residual = [m["step_time_ms"] - m["predicted_step_ms"] for m in metrics]
    outside = outside_waves_ms(metrics, dist.get_world_size())
    return StepOverhead(max(statistics.median(outside[1:]), 0.0), residual, outside)
