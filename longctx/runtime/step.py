"""Execute one step's Plan on this rank: forward and backward of every wave it takes part in.

For each wave, the rank looks for the group holding it (a rank is in at most
one group per wave; absent, it idles). The group's sequences are packed into
micro-batches (greedily, in plan order, each holding at most as many tokens as
the group's longest sequence, so peak activation memory is that of running the
longest sequence alone, as the planner's memory model assumes). Every
micro-batch is cut with `ZigzagSharding` over the group; the rank runs the
model on its shard with the group's attention kind and back-propagates the
loss ``sum CE / (targets in the whole step)``. Gradients accumulate in
``param.grad``; their sum over all ranks is the single-process gradient of the
whole step (see `longctx.runtime.grad_sync`).
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from longctx.attention import ZigzagSharding
from longctx.model import AttentionLayout, count_targets, next_token_targets
from longctx.model.activation_memory import PLAIN
from longctx.runtime.activations import RankActivations
from longctx.runtime.precision import compute_autocast
from longctx.runtime.process_groups import ProcessGroupCache
from longctx.scheduler import Plan, PlanGroup


@dataclass
class RankStepResult:
    """What one rank did in one step."""

    #: this rank's share of the step loss (the shares of all ranks sum to the step loss)
    loss: float
    #: wall seconds spent in the waves this rank took part in (forward + backward, communication included)
    busy_s: float
    #: tokens of this rank's shards (processed by this rank)
    tokens: int
    #: waves this rank took part in
    waves: int
    #: CPU seconds this rank's process used during `busy_s` (`time.process_time`, all its threads); on a
    #: shared CPU box ``cpu_s / busy_s`` is the share of a core the rank got (see `longctx.scheduler.step_prediction`)
    cpu_s: float = 0.0


def micro_batches(sequence_ids: Sequence[int], lengths: Sequence[int]) -> list[list[int]]:
    """Pack `sequence_ids` (plan order) into runs of at most ``max(lengths of these)`` tokens."""
    if not sequence_ids:
        return []
    capacity = max(lengths[i] for i in sequence_ids)
    batches: list[list[int]] = [[]]
    used = 0
    for i in sequence_ids:
        if batches[-1] and used + lengths[i] > capacity:
            batches.append([])
            used = 0
        batches[-1].append(i)
        used += lengths[i]
    return batches


def group_of(plan_wave_groups: Sequence[PlanGroup], rank: int) -> PlanGroup | None:
    """The group of one wave that holds `rank`, or None when it idles in that wave."""
    return next((group for group in plan_wave_groups if rank in group.ranks), None)


def run_micro_batch(model: nn.Module, sequences: Sequence[torch.Tensor], group: PlanGroup, rank: int,
                    groups: ProcessGroupCache, step_targets: int, attention_backend: str,
                    device: torch.device, activations: RankActivations | None = None,
                    precision: str = "fp32") -> tuple[float, int]:
    """Forward + backward of this rank's shard of the packed `sequences`; returns (loss share, tokens)."""
    lengths = torch.tensor([s.numel() for s in sequences], dtype=torch.int64)
    cu_seqlens = torch.cat([torch.zeros(1, dtype=torch.int64), torch.cumsum(lengths, 0)])
    sharding = ZigzagSharding(cu_seqlens, len(group.ranks))
    member = group.ranks.index(rank)
    index = sharding.token_index(member)
    tokens = torch.cat(list(sequences)).to(torch.int64)[index].to(device)
    targets = next_token_targets(sequences)[index].to(device)
    positions = sharding.positions(member).to(device)
    layout = AttentionLayout(kind=group.kind, group=groups.get(group.ranks),
                             ulysses_degree=group.ulysses_degree, backend=attention_backend)
    scope = activations.micro_batch() if activations is not None else contextlib.nullcontext(PLAIN)
    with scope as memory:
        with compute_autocast(precision, device):
            loss = model.loss(tokens, positions, cu_seqlens, targets, step_targets, layout, memory)
        loss.backward()
    return float(loss.detach()), int(index.numel())


def run_plan(model: nn.Module, plan: Plan, sequences: Sequence[torch.Tensor], rank: int,
             groups: ProcessGroupCache, *, attention_backend: str = "auto",
             device: torch.device | None = None, activations: RankActivations | None = None,
             precision: str = "fp32") -> RankStepResult:
    """Run `plan` on this rank; `sequences[i]` holds the tokens of sequence i (`[plan.lengths[i]]`).

    `groups.prepare(plan)` must have been called on every rank before. Gradients
    are accumulated into the parameters' ``.grad`` (zero them before the step).
    `activations` applies `memory.*` (checkpoints, tiles, offload, accounting; see
    `longctx.runtime.activations`; None: none of them); `precision`
    ("bf16" or "fp32") is the forward's compute precision (see `longctx.runtime.precision`).
    """
    device = device or torch.device("cpu")
    if [int(s.numel()) for s in sequences] != list(plan.lengths):
        raise ValueError("run_plan: the sequences' lengths differ from plan.lengths; plan the step's own sequences")
    step_targets = max(count_targets(plan.lengths), 1)
    loss, busy, cpu, tokens, waves = 0.0, 0.0, 0.0, 0, 0
    for wave in plan.waves:
        group = group_of(wave.groups, rank)
        if group is None:
            continue
        started, started_cpu = time.perf_counter(), time.process_time()
        for batch in micro_batches(group.sequences, plan.lengths):
            share, count = run_micro_batch(model, [sequences[i] for i in batch], group, rank, groups,
                                           step_targets, attention_backend, device, activations, precision)
            loss += share
            tokens += count
        busy += time.perf_counter() - started
        cpu += time.process_time() - started_cpu
        waves += 1
    return RankStepResult(loss=loss, busy_s=busy, tokens=tokens, waves=waves, cpu_s=cpu)
