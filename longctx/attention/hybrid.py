"""Ulysses x ring over one group: the composition every kind of attention runs.

A group of P ranks is factored into U (Ulysses degree) x R (ring size), group
rank p = i * U + j with ring index i and Ulysses index j. The U ranks of one
ring index are a Ulysses team (contiguous group ranks, usually one node); the
R ranks of one Ulysses index are a ring. The kinds are the corner cases: ring
is U = 1, Ulysses is R = 1, local is U = R = 1.

Forward: all-to-all inside the Ulysses team (sequence -> heads), ring
attention over the ring on the union of the team's tokens for this rank's
heads, all-to-all back. Backward mirrors it.

Teams and rings are member lists of the caller's `RankGroup`, talked to with
P2P on its process group (`longctx.attention.comm.MemberComm`); no process
group is created.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from longctx.attention.backends import Backend
from longctx.attention.comm import MemberComm, TrafficCounter
from longctx.attention.heads import HeadSlice, SliceKernel, split_heads
from longctx.attention.rank_group import RankGroup
from longctx.attention.ring import RingLayout, ring_backward, ring_forward
from longctx.attention.sharding import ZigzagSharding, doc_ids_of
from longctx.attention.ulysses import UlyssesExchange


@dataclass
class HybridPlan:
    """Everything one rank needs to run attention for one packed batch on one group.

    group None means a group of one (local attention); else the members (`RankGroup`) in group-rank order.
    """

    sharding: ZigzagSharding
    rank: int
    ulysses_degree: int
    num_q_heads: int
    num_kv_heads: int
    backend: Backend
    softmax_scale: float
    group: RankGroup | None
    traffic: TrafficCounter | None = None

    def __post_init__(self):
        degree, sharding = self.ulysses_degree, self.sharding
        ring_size = sharding.world_size // degree
        ring_index, ulysses_index = divmod(self.rank, degree)
        teams = [[i * degree + j for j in range(degree)] for i in range(ring_size)]
        heads = split_heads(self.num_q_heads, self.num_kv_heads, degree)
        self.q_ranges = [(h.q_start, h.q_end) for h in heads]
        self.kv_ranges = [(h.kv_start, h.kv_end) for h in heads]
        my_heads: HeadSlice | None = heads[ulysses_index] if degree > 1 else None
        self.kernel = SliceKernel(self.backend, self.softmax_scale, my_heads)
        self.exchange = None
        if degree > 1:
            team_comm = MemberComm(self.group.process_group, self.group.members(teams[ring_index]), self.traffic)
            self.exchange = UlyssesExchange(team_comm, [sharding.token_index(p) for p in teams[ring_index]])
        ring = [team[ulysses_index] for team in teams]
        self.ring_comm = MemberComm(self.group.process_group, self.group.members(ring), self.traffic) if ring_size > 1 else None
        tokens = [torch.sort(torch.cat([sharding.token_index(p) for p in team])).values for team in teams]
        docs = [doc_ids_of(sharding.cu_seqlens, t) for t in tokens]
        self.layout = RingLayout(docs, [t - sharding.cu_seqlens[d] for t, d in zip(tokens, docs)])


def exchanged_forward(ctx, q, k, v, plan: HybridPlan, attend: Callable) -> torch.Tensor:
    """The forward of `HybridAttention` (and of its replays): q/k/v to the head layout (Ulysses
    all-to-all, when the plan has one), ``attend(q, k, v) -> (out, lse)`` there, saving what the
    backward needs, then the output back to the sequence layout `[local_tokens, Hq, D]`."""
    exchange = plan.exchange
    if exchange is not None:
        q, k, v = exchange.seq_to_heads([q, k, v], [plan.q_ranges, plan.kv_ranges, plan.kv_ranges])
    out, lse = attend(q, k, v)
    ctx.save_for_backward(q, k, v, out, lse)
    ctx.plan = plan
    if exchange is not None:
        out = exchange.heads_to_seq([out], [plan.q_ranges], [plan.num_q_heads])[0]
    return out


class HybridAttention(torch.autograd.Function):
    """Autograd through Ulysses all-to-all, ring attention and the inverse all-to-all."""

    @staticmethod
    def forward(ctx, q, k, v, plan: HybridPlan):
        def ring(q, k, v):
            out, lse = ring_forward(q, k, v, plan.layout, plan.ring_comm, plan.kernel)
            return out.to(q.dtype), lse

        return exchanged_forward(ctx, q, k, v, plan, ring)

    @staticmethod
    def backward(ctx, dout):
        plan = ctx.plan
        q, k, v, out, lse = ctx.saved_tensors
        exchange = plan.exchange
        if exchange is not None:
            dout = exchange.seq_to_heads([dout], [plan.q_ranges])[0]
        grads = ring_backward(dout, q, k, v, out, lse, plan.layout, plan.ring_comm, plan.kernel)
        if exchange is not None:
            grads = exchange.heads_to_seq(
                list(grads), [plan.q_ranges, plan.kv_ranges, plan.kv_ranges],
                [plan.num_q_heads, plan.num_kv_heads, plan.num_kv_heads],
            )
        return (*grads, None)
