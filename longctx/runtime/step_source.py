"""Where each step's data and Plan come from, one step ahead of the training.

How: the MILP runs with a wall-clock time limit, so two ranks solving the same
step could stop at different incumbents, yet the plan must be identical on
every rank. So rank 0 alone samples and plans: `prefetch()` draws step t+1's
document pieces (document id, token range: `longctx.data.Piece`) and starts
solving its plan in a background thread (pure Python/PuLP/HiGHS, no torch)
while step t runs; `take()` at the start of step t+1 waits for the plan and
broadcasts the Plan JSON, the step's pieces and the sampler's state in one
`broadcast_object_list` on the communication device. Every rank then reads its
sequences itself from the memory-mapped dataset (`StepSampler.read`), so the
bytes broadcast per step grow with the number of pieces, not with the tokens
(`StepInput.broadcast_bytes`, logged as the metric ``broadcast_bytes``). A
planning error on rank 0 is broadcast too and raised on every rank, so no rank
is left waiting in a collective. Static mode uses the same path with
`static_plan` as the planner.
"""
from __future__ import annotations

import pickle
import traceback
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Callable, TypeVar

import numpy as np
import torch
import torch.distributed as dist

from longctx.data import Piece, StepSampler

from longctx.model.config import ModelConfig
from longctx.runtime.comm_device import comm_device
from longctx.runtime.config import MemoryConfig, ParallelConfig
from longctx.runtime.memory_check import run_memory_model
from longctx.scheduler import Cluster, CostModel, Plan, plan_step, static_plan
from longctx.scheduler.cost_profile import CostProfile

Planner = Callable[[list[int]], Plan]
T = TypeVar("T")


class PlanningError(RuntimeError):
    """Rank 0 could not plan a step; raised on every rank with rank 0's traceback."""


def planning_cost_model(parallel: ParallelConfig, model: ModelConfig, cluster: Cluster,
                        memory: MemoryConfig | None = None, precision: str = "fp32") -> CostModel:
    """The scheduler's cost model: `parallel.cost_profile` when given, else the default (H100) time
    constants with this model's shape (layers, heads, parameters; activations ``4 * dim * layers`` bytes
    per token, the default's value for its 7B shape). `parallel.max_tokens_per_rank`, when set, rescales
    the activation bytes per token so that exactly that many tokens fit one rank; otherwise, with the
    run's `memory` (and `precision`), the memory model gives the per-rank token capacity."""
    if parallel.cost_profile:
        cost_model = CostModel.from_profile(parallel.cost_profile)
    else:
        cost_model = CostModel(num_layers=model.n_layers, num_heads=model.n_heads, num_kv_heads=model.n_kv_heads,
                               head_dim=model.head_dim, num_params=float(model.num_parameters()),
                               activation_bytes_per_token=4.0 * model.dim * model.n_layers)
    if parallel.max_tokens_per_rank is not None:
        held = cost_model.max_tokens_per_rank(cluster) * cost_model.activation_bytes_per_token
        cost_model = replace(cost_model, activation_bytes_per_token=held / parallel.max_tokens_per_rank)
    elif memory is not None:
        cost_model = replace(cost_model, memory_model=run_memory_model(model, memory, precision, cluster.num_ranks,
                                                                       cost_model.reserved_gb))
    return cost_model


def planning_setup(parallel: ParallelConfig, model: ModelConfig, world_size: int, memory: MemoryConfig | None = None,
                   precision: str = "fp32") -> tuple[Cluster, CostModel]:
    """The cluster and cost model the planner uses on a world of `world_size` ranks; the links measured
    in `parallel.cost_profile`, when given, replace the cluster's defaults."""
    parallel.check_world(world_size)
    cluster = Cluster(num_ranks=world_size, ranks_per_node=parallel.ranks_per_node or world_size,
                      memory_per_rank_gb=parallel.memory_per_rank_gb)
    if parallel.cost_profile:
        cluster = CostProfile.load(parallel.cost_profile).cluster(cluster)
    return cluster, planning_cost_model(parallel, model, cluster, memory, precision)


def make_planner(parallel: ParallelConfig, model: ModelConfig, world_size: int, memory: MemoryConfig | None = None,
                 precision: str = "fp32") -> Planner:
    """The function ``lengths -> Plan`` for `parallel.mode` on a world of `world_size` ranks."""
    cluster, cost_model = planning_setup(parallel, model, world_size, memory, precision)
    if parallel.mode == "static":
        def planner(lengths: list[int]) -> Plan:
            return static_plan(lengths, cluster, cp=parallel.cp, kind=parallel.static_kind,
                               order=parallel.static_order, cost_model=cost_model)
    else:
        def planner(lengths: list[int]) -> Plan:
            peers, failure = megatron_candidate(lengths, cluster, cost_model) if parallel.megatron_candidate \
                else ([], None)
            plan = plan_step(lengths, cluster, cost_model=cost_model, method=parallel.planner,
                             solver=parallel.solver, time_limit_s=parallel.time_limit_s, peer_plans=peers)
            if failure:
                plan.notes.append(failure)
            return plan
    return planner


def megatron_candidate(lengths: list[int], cluster: Cluster, cost_model: CostModel) -> tuple[list[Plan], str | None]:
    """([megatron-core's BalancedCPScheduler plan of the step], None), or ([], why) when megatron made
    no plan (e.g. no valid one on a world that is not a power of two); the planner then compares its
    search with static only, and `why` goes into the plan's notes."""
    from longctx.peers.megatron_balanced_cp import megatron_balanced_cp_plan  # megatron-core: imported on use

    try:
        return [megatron_balanced_cp_plan(lengths, cluster, cost_model)], None
    except Exception as err:  # noqa: BLE001 - a peer's failure must not stop training; it is recorded
        return [], f"megatron candidate: none ({type(err).__name__}: {err})"


@dataclass
class StepInput:
    """One step as every rank receives it."""

    #: tokens of each sequence, int64 `[plan.lengths[i]]`
    sequences: list[torch.Tensor]
    plan: Plan
    #: the sampler's state right after this step's data: what a checkpoint taken after this step stores
    sampler_state: dict
    #: bytes of the step's broadcast payload (pickled plan, pieces and sampler state)
    broadcast_bytes: int = 0


def on_every_rank(make: Callable[[], T]) -> T:
    """Run `make()` on every rank; if it raises on any rank, every rank raises (collective).

    Without this, an error on one rank (a missing dataset, say) would leave the
    other ranks blocked in the next collective until the timeout.
    """
    result, error, mine = None, None, None
    try:
        result = make()
    except Exception as caught:  # noqa: BLE001 - every rank must learn of the failure
        error, mine = caught, f"{type(caught).__name__}: {caught}"
    status: list[str | None] = [None] * dist.get_world_size()
    dist.all_gather_object(status, mine)
    if error is not None:
        raise error
    failed = [(rank, why) for rank, why in enumerate(status) if why is not None]
    if failed:
        raise RuntimeError(f"rank {failed[0][0]} failed: {failed[0][1]}")
    return result


def pieces_array(pieces: list[Piece]) -> np.ndarray:
    """`[pieces, 3]` int64 rows (document, start, stop): the compact wire form of a step's pieces."""
    return np.asarray([(p.document, p.start, p.stop) for p in pieces], dtype=np.int64).reshape(-1, 3)


class StepSource:
    """Rank 0 draws each step's pieces and plans them in a background thread; every rank reads its data.

    Use: ``prefetch()`` once the current step's input is taken (rank 0 draws the
    next step's pieces and starts planning them), then ``take()`` (collective)
    when that step starts. Every rank passes a sampler over the same dataset
    (opening it only memory-maps the files); only rank 0's draws pieces.
    """

    def __init__(self, sampler: StepSampler, planner: Planner) -> None:
        self._is_source = dist.get_rank() == 0
        self._sampler = sampler
        self._planner = planner
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="longctx-plan") \
            if self._is_source else None
        self._pending: tuple[np.ndarray, dict, Future] | None = None

    def prefetch(self) -> None:
        """Rank 0: draw the next step's pieces and start planning them (no-op elsewhere)."""
        if not self._is_source:
            return
        if self._pending is not None:
            raise RuntimeError("StepSource.prefetch: the previous step was not taken yet; call take() first")
        pieces = pieces_array(self._sampler.next_pieces())
        lengths = [int(stop - start) for _, start, stop in pieces]
        self._pending = (pieces, self._sampler.state_dict(), self._executor.submit(self._planner, lengths))

    def take(self) -> StepInput:
        """The prefetched step's data and plan, identical on every rank (collective)."""
        payload: list[object] = [None]
        if self._is_source:
            if self._pending is None:
                raise RuntimeError("StepSource.take: nothing was prefetched; call prefetch() first")
            pieces, state, future = self._pending
            self._pending = None
            try:
                payload[0] = ("step", future.result().to_json(), pieces, state)
            except Exception:  # noqa: BLE001 - every rank must learn of the failure
                payload[0] = ("error", traceback.format_exc())
        dist.broadcast_object_list(payload, src=0, device=comm_device())
        if payload[0][0] == "error":
            raise PlanningError(f"rank 0 failed to plan the next step:\n{payload[0][1]}")
        _, text, pieces, state = payload[0]
        plan = Plan.from_json(text).validate()
        if plan.world_size != dist.get_world_size():
            raise PlanningError(f"the plan is for {plan.world_size} ranks but the world has {dist.get_world_size()}")
        arrays = self._sampler.read([Piece(int(d), int(a), int(b)) for d, a, b in pieces])
        sequences = [torch.from_numpy(np.asarray(tokens, dtype=np.int64)) for tokens in arrays]
        return StepInput(sequences, plan, state, broadcast_bytes=len(pickle.dumps(payload[0])))

    def close(self) -> None:
        """Stop the planning thread (waits for a running solve)."""
        if self._executor is not None:
            self._executor.shutdown(wait=True)
