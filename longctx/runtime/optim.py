"""The step's optimizer (AdamW, replicated or sharded) and its learning-rate schedule.

Schedule: linear warmup, then cosine decay to a floor. Optimizer: with
``memory.optimizer_sharding=none`` and no optimizer offload, every rank keeps
the whole AdamW state (`ReplicatedAdamW`: one gradient all-reduce); otherwise
`longctx.runtime.zero.ShardedAdamW`. Both take the same three calls per step:
``zero_grad()``, ``synchronize_gradients(max_norm) -> norm``, ``step()``; ``local_gradients()`` gives the
rank's unsummed gradients in between (for the non-finite check).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from longctx.runtime.config import MemoryConfig, OptimConfig
from longctx.runtime.grad_sync import all_reduce_gradients, clip_gradients
from longctx.runtime.zero import ShardedAdamW, adamw


def lr_factor(step: int, warmup_steps: int, total_steps: int, min_ratio: float) -> float:
    """Multiplier of the peak LR for optimizer step `step` (0-based).

    Warmup: ``(step + 1) / warmup_steps`` for the first `warmup_steps` steps;
    then cosine from 1 down to `min_ratio` at the last step (`total_steps` - 1).
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    decay_steps = max(total_steps - warmup_steps - 1, 1)
    progress = min((step - warmup_steps) / decay_steps, 1.0)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


class ReplicatedAdamW:
    """AdamW over the whole model on every rank; gradients summed by one flat all-reduce."""

    def __init__(self, model: nn.Module, config: OptimConfig) -> None:
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.torch_optimizer = adamw([p for p in self.params if p.ndim >= 2],
                                     [p for p in self.params if p.ndim < 2], config)

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.torch_optimizer.zero_grad(set_to_none=set_to_none)

    def local_gradients(self) -> list[torch.Tensor | None]:
        """This rank's accumulated (not yet summed) gradient of every parameter."""
        return [p.grad for p in self.params]

    def synchronize_gradients(self, max_norm: float) -> float:
        """Sum the gradients over the world and clip them to `max_norm`; returns the norm before clipping."""
        all_reduce_gradients(self.params)
        return clip_gradients(self.params, max_norm)

    def step(self) -> None:
        self.torch_optimizer.step()


StepOptimizer = ReplicatedAdamW | ShardedAdamW


def make_optimizer(model: nn.Module, config: OptimConfig, total_steps: int, memory: MemoryConfig | None = None,
                   precision: str = "fp32") -> tuple[StepOptimizer, torch.optim.lr_scheduler.LambdaLR]:
    """The optimizer `memory` asks for (default: replicated) and its LambdaLR schedule.

    `precision` (resolved ``train.precision``): with "bf16" the sharded/offloaded optimizer keeps the
    replicated weights in bf16 next to its fp32 masters; the replicated optimizer's weights are its fp32
    masters and stay fp32.
    """
    memory = memory or MemoryConfig()
    if memory.optimizer_sharding == "none" and not memory.optimizer_offload:
        optimizer: StepOptimizer = ReplicatedAdamW(model, config)
    else:
        weights = torch.bfloat16 if precision == "bf16" else torch.float32
        optimizer = ShardedAdamW(model, config, memory.optimizer_sharding, memory.optimizer_offload,
                                 weights_dtype=weights)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer.torch_optimizer,
        lambda step: lr_factor(step, config.warmup_steps, total_steps, config.min_lr_ratio),
    )
    return optimizer, schedule
