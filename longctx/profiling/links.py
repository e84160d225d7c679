"""Point-to-point and all-to-all bandwidth and latency between the world's ranks.

P2P: rank 0 and one peer play ping-pong with messages of several sizes (one
way = half the round trip, the fastest of the repeats: load on a shared
machine only ever adds time); ``latency + bytes/bandwidth``
is fitted over the sizes. The peer is rank 1 for the intra-node link and the
first rank of the second node for the inter-node link (nodes: consecutive
blocks of ``ranks_per_node`` ranks). All-to-all: the first ``u`` ranks
exchange ``bytes`` per rank with `MemberComm.all_to_all` (the Ulysses path);
the fit is over the bytes each rank actually sends, ``bytes * (u-1)/u``, the
volume the cost model divides by the all-to-all bandwidth. Ranks outside a
measurement wait at a barrier, so links are timed on an otherwise quiet world.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.distributed as dist

from longctx.attention.comm import MemberComm
from longctx.profiling.collectives import from_rank0, max_over_ranks
from longctx.profiling.fit import fit_link


@dataclass(frozen=True)
class LinkFit:
    """A fitted link: one-way latency (us), bandwidth (GB/s) and the samples (bytes, seconds)."""

    latency_us: float
    gbps: float
    samples: tuple[tuple[int, float], ...]

    def to_dict(self) -> dict:
        return {"latency_us": self.latency_us, "gbps": self.gbps,
                "samples_bytes_seconds": [list(s) for s in self.samples]}


def _ping_pong_s(peer: int, nbytes: int, repeats: int, device: torch.device) -> float:
    """One-way seconds between rank 0 and `peer` (fastest of `repeats` round trips / 2); 0 elsewhere."""
    rank = dist.get_rank()
    buffer = torch.zeros(max(nbytes, 1), dtype=torch.uint8, device=device)
    times = []
    for _ in range(repeats + 1):  # the first round trip warms the connection up
        started = time.perf_counter()
        if rank == 0:
            dist.send(buffer, peer)
            dist.recv(buffer, peer)
        elif rank == peer:
            dist.recv(buffer, 0)
            dist.send(buffer, 0)
        times.append((time.perf_counter() - started) / 2)
    return min(times[1:])


def p2p_samples(peer: int, sizes: Sequence[int], repeats: int, device: torch.device) -> list[tuple[int, float]]:
    """(bytes, one-way seconds) between rank 0 and `peer` for each of `sizes`; collective, rank 0's times."""
    samples = []
    for nbytes in sizes:
        dist.barrier()
        seconds = _ping_pong_s(peer, nbytes, repeats, device) if dist.get_rank() in (0, peer) else 0.0
        samples.append((int(nbytes), from_rank0(seconds, device)))
    return samples


def measure_p2p(peer: int, sizes: Sequence[int], repeats: int, device: torch.device) -> LinkFit:
    """The link between rank 0 and `peer` over message `sizes` (bytes); collective, same result everywhere.
    Raises ValueError (from `fit_link`) when the samples are too noisy to fit."""
    samples = p2p_samples(peer, sizes, repeats, device)
    latency_us, gbps = fit_link([b for b, _ in samples], [s for _, s in samples])
    return LinkFit(latency_us, gbps, tuple(samples))


def _alltoall_s(members: list[int], nbytes: int, repeats: int, device: torch.device) -> float:
    """Fastest seconds of one all-to-all of `nbytes` per rank among `members` (this rank is one of them)."""
    comm = MemberComm(dist.group.WORLD, members)
    part = max(nbytes // len(members), 1)
    parts = [torch.zeros(part, dtype=torch.uint8, device=device) for _ in members]
    times = []
    for _ in range(repeats + 1):
        started = time.perf_counter()
        comm.all_to_all(parts, [part] * len(members))
        times.append(time.perf_counter() - started)
    return min(times[1:])


def alltoall_samples(group_size: int, sizes: Sequence[int], repeats: int,
                     device: torch.device) -> list[tuple[int, float]]:
    """(bytes per rank, seconds of the slowest member) of all-to-alls among ranks ``0..group_size-1``; collective."""
    members = list(range(group_size))
    samples = []
    for nbytes in sizes:
        dist.barrier()
        seconds = _alltoall_s(members, nbytes, repeats, device) if dist.get_rank() in members else 0.0
        samples.append((int(nbytes), max_over_ranks(seconds, device)))
    return samples


def measure_alltoall(group_size: int, sizes: Sequence[int], repeats: int, device: torch.device) -> LinkFit:
    """All-to-all among ranks ``0..group_size-1`` over per-rank `sizes` (bytes); collective.

    The fitted bandwidth is per rank over the bytes a rank sends to the others, ``bytes*(u-1)/u``.
    Raises ValueError (from `fit_link`) when the samples are too noisy to fit.
    """
    samples = alltoall_samples(group_size, sizes, repeats, device)
    sent = [b * (group_size - 1) / group_size for b, _ in samples]
    latency_us, gbps = fit_link(sent, [s for _, s in samples])
    return LinkFit(latency_us, gbps, tuple(samples))
