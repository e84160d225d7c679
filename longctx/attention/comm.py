"""Point-to-point communication among some members of one process group.

Every kind of attention talks only over the caller's group, with
`batch_isend_irecv` addressed by rank inside that group (`group_peer`), so it
works for groups of any size with non-contiguous global ranks, and a hybrid's
Ulysses and ring "subgroups" are just lists of member ranks: no process group
is ever created, so there is nothing to create collectively or to cache.

Empty messages are skipped (both sides know every size in advance). The bytes
this rank sends are added to an optional `TrafficCounter`.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class TrafficCounter:
    """Bytes this rank sent (payload only), summed over calls."""

    bytes_sent: int = 0


class MemberComm:
    """P2P among `members` (ranks of `group`, in member order); this rank must be one of them."""

    def __init__(self, group: dist.ProcessGroup, members: list[int], traffic: TrafficCounter | None = None):
        self.group = group
        self.members = list(members)
        self.index = self.members.index(dist.get_rank(group))
        self.size = len(self.members)
        self.traffic = traffic

    def _op(self, send: bool, tensor: torch.Tensor, member: int, tag: int) -> dist.P2POp:
        if send and self.traffic is not None:
            self.traffic.bytes_sent += tensor.numel() * tensor.element_size()
        kind = dist.isend if send else dist.irecv
        return dist.P2POp(kind, tensor, group=self.group, group_peer=self.members[member], tag=tag)

    def shift(self, send: list[torch.Tensor], recv: list[torch.Tensor], tag: int = 0) -> list[dist.Work]:
        """Start sending each of `send` to the next member and receiving each of `recv` from the previous.

        Returns the requests; `.wait()` each before reading `recv`. The i-th send
        of one member pairs with the i-th receive of the next (tag ``tag + i``).
        """
        nxt, prev = (self.index + 1) % self.size, (self.index - 1) % self.size
        ops = [self._op(True, t, nxt, tag + i) for i, t in enumerate(send) if t.numel()]
        ops += [self._op(False, t, prev, tag + i) for i, t in enumerate(recv) if t.numel()]
        return dist.batch_isend_irecv(ops) if ops else []

    def all_to_all(self, parts: list[torch.Tensor], recv_numels: list[int]) -> list[torch.Tensor]:
        """Send the 1-D tensor `parts[j]` to member j; return the 1-D tensors received from each member.

        `recv_numels[i]` is the element count member i sends here; all parts share one dtype.
        """
        received = [parts[self.index].new_empty(n) for n in recv_numels]
        received[self.index] = parts[self.index]
        others = [j for j in range(self.size) if j != self.index]
        ops = [self._op(True, parts[j], j, 0) for j in others if parts[j].numel()]
        ops += [self._op(False, received[j], j, 0) for j in others if recv_numels[j]]
        for request in dist.batch_isend_irecv(ops) if ops else []:
            request.wait()
        return received
