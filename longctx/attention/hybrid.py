"""Ulysses x ring over one group: the composition every kind of attention runs.

A group of P ranks is factored into U (Ulysses degree) x R (ring size), group
rank p = i * U + j with ring index i and Ulysses index j. The U ranks of one
ring index form a Ulysses subgroup (contiguous group ranks, usually one node);
the R ranks of one Ulysses index form a ring subgroup. The kinds are the corner
cases: ring is U = 1, Ulysses is R = 1, local is U = R = 1.

Forward: all-to-all inside the Ulysses subgroup (sequence -> heads), ring
attention over the ring subgroup on the union of the Ulysses subgroup's tokens
for this rank's heads, all-to-all back. Backward mirrors it.

Subgroups are created with `new_group(use_local_synchronization=True)`, so only
the member ranks take part, every rank of the parent group creates its Ulysses
subgroup first and its ring subgroup second (no rank waits on a group whose
members are busy creating another), and they are cached by their tuple of
global ranks, so each is created once per process.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist

from longctx.attention.backends import Backend
from longctx.attention.comm import RingComm, TrafficCounter
from longctx.attention.heads import HeadSlice, SliceKernel, split_heads
from longctx.attention.ring import RingLayout, ring_backward, ring_forward
from longctx.attention.sharding import ZigzagSharding, doc_ids_of
from longctx.attention.ulysses import UlyssesExchange

#: subgroups created by this process, by their global ranks in group-rank order
_SUBGROUPS: dict[tuple[int, ...], dist.ProcessGroup] = {}


def _subgroup(global_ranks: tuple[int, ...]) -> dist.ProcessGroup:
    if global_ranks not in _SUBGROUPS:
        _SUBGROUPS[global_ranks] = dist.new_group(
            list(global_ranks), use_local_synchronization=True, sort_ranks=False
        )
    return _SUBGROUPS[global_ranks]


def hybrid_subgroups(group: dist.ProcessGroup, ulysses_degree: int) -> tuple[dist.ProcessGroup | None, ...]:
    """(Ulysses subgroup, ring subgroup) of this rank; None for a subgroup of one or the whole group."""
    size, me = dist.get_world_size(group), dist.get_rank(group)
    ring_size = size // ulysses_degree
    if ulysses_degree == 1:
        return None, (group if size > 1 else None)
    if ring_size == 1:
        return group, None
    global_rank = [dist.get_global_rank(group, r) for r in range(size)]
    ring_index, ulysses_index = divmod(me, ulysses_degree)
    ulysses = _subgroup(tuple(global_rank[ring_index * ulysses_degree + j] for j in range(ulysses_degree)))
    ring = _subgroup(tuple(global_rank[i * ulysses_degree + ulysses_index] for i in range(ring_size)))
    return ulysses, ring


@dataclass
class HybridPlan:
    """Everything one rank needs to run attention for one packed batch on one group."""

    sharding: ZigzagSharding
    rank: int
    ulysses_degree: int
    num_q_heads: int
    num_kv_heads: int
    backend: Backend
    softmax_scale: float
    ulysses_group: dist.ProcessGroup | None
    ring_group: dist.ProcessGroup | None
    traffic: TrafficCounter | None = None

    def __post_init__(self):
        degree, sharding = self.ulysses_degree, self.sharding
        ring_size = sharding.world_size // degree
        ring_index, ulysses_index = divmod(self.rank, degree)
        members = [[i * degree + j for j in range(degree)] for i in range(ring_size)]
        heads = split_heads(self.num_q_heads, self.num_kv_heads, degree)
        self.q_ranges = [(h.q_start, h.q_end) for h in heads]
        self.kv_ranges = [(h.kv_start, h.kv_end) for h in heads]
        my_heads: HeadSlice | None = heads[ulysses_index] if degree > 1 else None
        self.kernel = SliceKernel(self.backend, self.softmax_scale, my_heads)
        self.exchange = (
            UlyssesExchange(self.ulysses_group, [sharding.token_index(p) for p in members[ring_index]], self.traffic)
            if self.ulysses_group is not None else None
        )
        tokens = [torch.sort(torch.cat([sharding.token_index(p) for p in m])).values for m in members]
        docs = [doc_ids_of(sharding.cu_seqlens, t) for t in tokens]
        self.layout = RingLayout(docs, [t - sharding.cu_seqlens[d] for t, d in zip(tokens, docs)])
        self.ring_comm = RingComm(self.ring_group, self.traffic) if self.ring_group is not None else None


class HybridAttention(torch.autograd.Function):
    """Autograd through Ulysses all-to-all, ring attention and the inverse all-to-all."""

    @staticmethod
    def forward(ctx, q, k, v, plan: HybridPlan):
        exchange = plan.exchange
        if exchange is not None:
            q, k, v = exchange.seq_to_heads([q, k, v], [plan.q_ranges, plan.kv_ranges, plan.kv_ranges])
        out, lse = ring_forward(q, k, v, plan.layout, plan.ring_comm, plan.kernel)
        out = out.to(q.dtype)
        ctx.save_for_backward(q, k, v, out, lse)
        ctx.plan = plan
        if exchange is not None:
            out = exchange.heads_to_seq([out], [plan.q_ranges], [plan.num_q_heads])[0]
        return out

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
