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

from longctx.profiling.collectives import max_over_ranks, sum_over_ranks
from longctx.profiling.fit import fit_quadratic
from longctx.runtime.activations import RankActivations
from longctx.runtime.config import RunConfig
from longctx.runtime.precision import resolve_precision
from longctx.runtime.process_groups import ProcessGroupCache
from longctx.runtime.step import run_plan
from longctx.scheduler import GroupShape, Plan, PlanGroup, PlanWave
from longctx.scheduler.cost_model import shape_key


@dataclass(frozen=True)
class Execution:
    """How the trainer runs a micro-batch on this rank: the model, its inputs' vocabulary, the attention
    backend, the compute and communication devices, ``memory.*`` (`RankActivations`; None: plain
    forward + backward) and the compute precision ("fp32" or "bf16")."""

    model: nn.Module
    vocab_size: int
    attention_backend: str
    device: torch.device
    comm_device: torch.device
    activations: RankActivations | None
    precision: str

    @classmethod
    def for_run(cls, run: RunConfig, model: nn.Module, device: torch.device,
                comm_device: torch.device) -> "Execution":
        """As `longctx.runtime.trainer` runs `run`'s micro-batches: its memory.* and resolved precision
        (``memory.param_offload``'s weight copies are not replicated: it needs the run's optimizer)."""
        return cls(model, run.model.vocab_size, run.parallel.attention_backend, device, comm_device,
                   RankActivations(run.memory, model.parameters(), device),
                   resolve_precision(run.train.precision, device))


@dataclass(frozen=True)
class ShapeSample:
    """The measured time of one sequence of `tokens` on `shape` (ms, median over repeats) and the core
    share of its runs (CPU s per busy wall s over every rank, the median over repeats; 0 on CUDA)."""

    shape: GroupShape
    tokens: int
    time_ms: float
    core_share: float = 0.0


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


def time_shape(execution: Execution, shape: GroupShape, tokens: int,
               groups: ProcessGroupCache) -> tuple[float, float]:
    """The slowest measured rank's forward+backward time (ms) of one `tokens`-token sequence on `shape`
    in a tiled wave, run once, and the run's core share (CPU s per busy wall s summed over all ranks;
    0 on CUDA, where the host's CPU time says nothing of the device's speed). Collective; same arguments
    on every rank; `groups` holds the wave's process groups."""
    rank, world = dist.get_rank(), dist.get_world_size()
    plan, measured = tiled_plan(shape, world, tokens)
    generator = torch.Generator().manual_seed(tokens)
    sequences = [torch.randint(0, execution.vocab_size, (n,), generator=generator) for n in plan.lengths]
    groups.prepare(plan)
    model = execution.model
    model.zero_grad(set_to_none=True)
    dist.barrier()
    result = run_plan(model, plan, sequences, rank, groups, attention_backend=execution.attention_backend,
                      device=execution.device, activations=execution.activations, precision=execution.precision)
    model.zero_grad(set_to_none=True)
    cpu_s, busy_s = sum_over_ranks([result.cpu_s, result.busy_s], execution.comm_device)
    share = cpu_s / busy_s if execution.device.type == "cpu" and busy_s > 0 else 0.0
    return max_over_ranks(result.busy_s * 1e3 if rank in measured else 0.0, execution.comm_device), share


def measure_shapes(execution: Execution, shapes: Sequence[GroupShape], lengths: Sequence[int],
                   repeats: int) -> list[ShapeSample]:
    """Every shape at every length, the median of `repeats` runs (collective).

    One untimed warm-up run per shape first; then `repeats` rounds, each timing every (shape, length)
    once, so a drift of a shared machine's load during the profile spreads over all shapes alike
    instead of making the shapes measured in a busy minute look slow next to the others.
    """
    groups = ProcessGroupCache()
    for shape in shapes:
        time_shape(execution, shape, min(lengths), groups)
    runs: dict[tuple[GroupShape, int], list[tuple[float, float]]] = {
        (shape, int(n)): [] for shape in shapes for n in lengths}
    for _ in range(repeats):
        for shape, tokens in runs:
            runs[shape, tokens].append(time_shape(execution, shape, tokens, groups))
    samples = [ShapeSample(shape, tokens, statistics.median(ms for ms, _ in timed),
                           statistics.median(share for _, share in timed)) for (shape, tokens), timed in runs.items()]
    if dist.get_rank() == 0:
        for sample in samples:
            print(f"profile: {shape_key(sample.shape)} {sample.tokens} tokens: {sample.time_ms:.1f} ms", flush=True)
    return samples


def fit_shapes(samples: Sequence[ShapeSample]) -> dict[str, list[float]]:
    """Shape key -> ``[a ms, b ms/token, c ms/token^2]`` fitted over that shape's samples."""
    by_shape: dict[GroupShape, list[ShapeSample]] = {}
    for sample in samples:
        by_shape.setdefault(sample.shape, []).append(sample)
    return {shape_key(shape): fit_quadratic([s.tokens for s in mine], [s.time_ms for s in mine])
            for shape, mine in by_shape.items()}
