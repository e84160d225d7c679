"""Time one sequence's forward + backward on every candidate group shape, with every rank busy.

A measurement is one wave of the runtime's own `run_plan`: the world is tiled
with as many groups of the shape as fit, each running one sequence of ``s``
tokens; ranks left over run a local sequence of ``ceil(s / d)`` tokens (the
same per-rank work), so the machine is as loaded as in a training wave (on a
CPU box, ranks share cores: a shape timed alone would look faster than it runs
in training). The sample is the slowest member of the measured groups
(busy seconds of `run_plan`), the median over repeats; one untimed run per
shape warms it up. `fit_shapes` fits ``a + b*s + c*s^2`` ms per shape.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.distributed as dist
from torch import nn

from longctx.profiling.collectives import max_over_ranks
from longctx.profiling.fit import fit_quadratic
from longctx.runtime.process_groups import ProcessGroupCache
from longctx.runtime.step import run_plan
from longctx.scheduler import GroupShape, Plan, PlanGroup, PlanWave
from longctx.scheduler.cost_model import shape_key


@dataclass(frozen=True)
class ShapeSample:
    """The measured time of one sequence of `tokens` on `shape` (ms, median over repeats)."""

    shape: GroupShape
    tokens: int
    time_ms: float


def tiled_plan(shape: GroupShape, world: int, tokens: int) -> tuple[Plan, list[int]]:
    """One wave tiling `world` ranks with groups of `shape` (one `tokens`-token sequence each) plus
    local fillers; returns the plan and the ranks of the groups of `shape` (the measured ranks)."""
    d = shape.size
    count = world // d
    if count < 1:
        raise ValueError(f"tiled_plan: a group of {d} ranks does not fit a world of {world}")
    filler = -(-tokens // d)
    groups = [PlanGroup(list(range(g * d, (g + 1) * d)), shape.kind, shape.ulysses_degree, [g])
              for g in range(count)]
    groups += [PlanGroup([r], "local", 1, [count + i]) for i, r in enumerate(range(count * d, world))]
    lengths = [tokens] * count + [filler] * (world - count * d)
    return Plan(world_size=world, lengths=lengths, waves=[PlanWave(groups)], method="profile").validate(), \
        list(range(count * d))


def time_shape(model: nn.Module, shape: GroupShape, tokens: int, repeats: int, vocab_size: int,
               attention_backend: str, device: torch.device, comm_device: torch.device) -> float:
    """Median over `repeats` of the slowest measured rank's forward+backward time (ms) of one
    `tokens`-token sequence on `shape` in a tiled wave (collective; same arguments on every rank)."""
    rank, world = dist.get_rank(), dist.get_world_size()
    plan, measured = tiled_plan(shape, world, tokens)
    generator = torch.Generator().manual_seed(tokens)
    sequences = [torch.randint(0, vocab_size, (n,), generator=generator) for n in plan.lengths]
    groups = ProcessGroupCache()
    groups.prepare(plan)
    samples = []
    for _ in range(repeats):
        model.zero_grad(set_to_none=True)
        dist.barrier()
        result = run_plan(model, plan, sequences, rank, groups, attention_backend=attention_backend, device=device)
        samples.append(max_over_ranks(result.busy_s * 1e3 if rank in measured else 0.0, comm_device))
    model.zero_grad(set_to_none=True)
    return statistics.median(samples)


def measure_shapes(model: nn.Module, shapes: Sequence[GroupShape], lengths: Sequence[int], repeats: int,
                   vocab_size: int, attention_backend: str, device: torch.device,
                   comm_device: torch.device) -> list[ShapeSample]:
    """Every shape at every length (collective); one untimed warm-up run per shape."""
    samples = []
    for shape in shapes:
        time_shape(model, shape, min(lengths), 1, vocab_size, attention_backend, device, comm_device)
        for tokens in lengths:
            ms = time_shape(model, shape, tokens, repeats, vocab_size, attention_backend, device, comm_device)
            samples.append(ShapeSample(shape, int(tokens), ms))
            if dist.get_rank() == 0:
                print(f"profile: {shape_key(shape)} {tokens} tokens: {ms:.1f} ms", flush=True)
    return samples


def fit_shapes(samples: Sequence[ShapeSample]) -> dict[str, list[float]]:
    """Shape key -> ``[a ms, b ms/token, c ms/token^2]`` fitted over that shape's samples."""
    by_shape: dict[GroupShape, list[ShapeSample]] = {}
    for sample in samples:
        by_shape.setdefault(sample.shape, []).append(sample)
    return {shape_key(shape): fit_quadratic([s.tokens for s in mine], [s.time_ms for s in mine])
            for shape, mine in by_shape.items()}
