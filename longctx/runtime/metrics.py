"""Per-step metrics gathered from every rank.

Definitions (per step, seconds): ``step_time_s`` is rank 0's wall time of the
step (planning wait, waves, gradient sync, optimizer); a rank's ``busy_s`` is
the wall time it spent in the waves it took part in (forward + backward, its
attention communication included); ``idle_s = step_time_s - busy_s`` is what it
spent waiting: idle waves, the gradient all-reduce waiting for slower ranks,
the optimizer. MFU uses `longctx.model.FLOPS_CONVENTION` and the configured
peak per rank. Peak memory: CUDA's max allocated bytes on GPU, else the
process's peak resident set size (ru_maxrss), in GB, the maximum over ranks.
"""
from __future__ import annotations

import resource
from typing import Sequence

import torch

from longctx.model import ModelConfig, mfu, step_flops
from longctx.runtime.comm_device import gather_floats
from longctx.runtime.step import RankStepResult
from longctx.scheduler import Plan


def peak_memory_gb(device: torch.device) -> float:
    """Peak memory of this process in GB (see the module docstring)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 1e9
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9


def gather_rank_results(result: RankStepResult, device: torch.device) -> torch.Tensor:
    """`[world, 5]` float64 CPU rows (loss share, busy_s, tokens, peak memory GB, cpu_s) of every rank (collective).

    `device` is the compute device (for the peak memory); the rows travel on `comm_device()`.
    """
    return gather_floats([result.loss, result.busy_s, result.tokens, peak_memory_gb(device), result.cpu_s])


def step_metrics(rows: torch.Tensor, plan: Plan, model: ModelConfig, step_time_s: float, grad_norm: float,
                 lr: float, peak_tflops_per_rank: float, step_overhead_ms: float = 0.0,
                 load_scale: float = 1.0) -> dict[str, float]:
    """The tracker's metrics of one step from the gathered rows (see `gather_rank_results`).

    ``predicted_step_ms`` is the plan's time under the planner's cost model times `load_scale` (the
    cost model's correction for the machine's current load, `longctx.scheduler.step_prediction`)
    plus that model's `step_overhead_ms`; ``predicted_unscaled_step_ms`` is the same without the load
    correction; ``step_time_ms`` is the measured `step_time_s` in ms. ``core_share`` is the CPU seconds
    per busy wall second of the ranks in the waves (the share of a core a busy rank got). The
    prediction's parts, measured: ``waves_ms`` (the busiest rank's time in the waves; predicted:
    ``plan_predicted_ms * load_scale``) and ``outside_waves_ms`` (the rest; predicted: the overhead).
    """
    world = rows.shape[0]
    tokens = sum(plan.lengths)
    flops = step_flops(model, plan.lengths)
    metrics = {
        "loss": float(rows[:, 0].sum()),
        "grad_norm": grad_norm,
        "lr": lr,
        "step_time_s": step_time_s,
        "tokens": float(tokens),
        "tokens_per_s": tokens / step_time_s if step_time_s > 0 else 0.0,
        "mfu": mfu(flops, step_time_s, world, peak_tflops_per_rank * 1e12),
        "model_tflops": flops / 1e12,
        "peak_memory_gb": float(rows[:, 3].max()),
        "plan_gap_to_bound": plan.gap_to_bound(),
        "plan_predicted_ms": plan.predicted_step_time_ms,
        "predicted_step_ms": plan.predicted_step_time_ms * load_scale + step_overhead_ms,
        "predicted_unscaled_step_ms": plan.predicted_step_time_ms + step_overhead_ms,
        "load_scale": load_scale,
        "core_share": float(rows[:, 4].sum() / rows[:, 1].sum()) if rows[:, 1].sum() > 0 else 0.0,
        "step_time_ms": step_time_s * 1e3,
        "plan_lower_bound_ms": plan.lower_bound_ms,
        "plan_solve_s": plan.solve_time_s,
        "plan_waves": float(len(plan.waves)),
    }
    for rank in range(world):
        busy = float(rows[rank, 1])
        metrics[f"busy_s/rank{rank}"] = busy
        metrics[f"idle_s/rank{rank}"] = max(step_time_s - busy, 0.0)
    metrics["busy_fraction"] = float(rows[:, 1].sum()) / (world * step_time_s) if step_time_s > 0 else 0.0
    # the prediction's two parts, measured: the waves on the busiest rank and the rest of the step
    metrics["waves_ms"] = float(rows[:, 1].max()) * 1e3
    metrics["outside_waves_ms"] = metrics["step_time_ms"] - metrics["waves_ms"]
    return metrics


def busy_idle(metrics: Sequence[dict[str, float]], world: int) -> dict[str, list[float]]:
    """Total busy and idle seconds per rank over several steps' metrics."""
    return {
        "busy_s": [sum(m[f"busy_s/rank{r}"] for m in metrics) for r in range(world)],
        "idle_s": [sum(m[f"idle_s/rank{r}"] for m in metrics) for r in range(world)],
    }
