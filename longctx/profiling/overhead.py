"""The per-step time outside the waves, measured on a few real training steps.

Everything a step does besides its waves — taking the planned step from rank 0
(broadcast), gradient sum, clipping, the optimizer and LR step, gathering the
metrics — is the same for every plan, so the cost model holds it as one number,
`CostModel.step_overhead_ms`. It is measured by running the real trainer
(`longctx.runtime.trainer.train`, the run's own config, a scratch output
directory, no tracker, no checkpoints) for a few steps: per step,
``step_time_ms - max over ranks of busy_ms`` (busy: the rank's time inside
the waves); the overhead is the median over the steps after the first (the
first pays allocator and process-group warm-up).
"""
from __future__ import annotations

import shutil
import statistics
import tempfile
from dataclasses import replace

import torch.distributed as dist

from longctx.runtime.config import RunConfig


def overhead_samples_ms(metrics: list[dict[str, float]], world: int) -> list[float]:
    """Per step: its wall time minus the busiest rank's time in the waves (ms)."""
    return [m["step_time_s"] * 1e3 - max(m[f"busy_s/rank{r}"] for r in range(world)) * 1e3 for m in metrics]


def measure_step_overhead(run: RunConfig, steps: int) -> tuple[float, list[float]]:
    """(median overhead ms over steps 2..`steps`, every step's sample) of `steps` real training steps
    with `run`'s model, data and parallel settings (collective; every rank gets the same numbers)."""
    from longctx.runtime.trainer import train

    if steps < 2:
        raise ValueError(f"measure_step_overhead: steps={steps} must be >= 2 (the first step is warm-up)")
    scratch = [tempfile.mkdtemp(prefix="longctx-profile-") if dist.get_rank() == 0 else None]
    dist.broadcast_object_list(scratch, src=0)
    scratch_run = replace(
        run,
        train=replace(run.train, steps=steps, output_dir=scratch[0], resume="never", checkpoint_every=0,
                      stop_after_steps=None, progress=False),
        optim=replace(run.optim, warmup_steps=min(run.optim.warmup_steps, steps)),
        tracker=replace(run.tracker, kind="none"),
    )
    try:
        metrics = train(scratch_run).metrics
    finally:
        dist.barrier()
        if dist.get_rank() == 0:
            shutil.rmtree(scratch[0], ignore_errors=True)
    samples = overhead_samples_ms(metrics, dist.get_world_size())
    return max(statistics.median(samples[1:]), 0.0), samples
