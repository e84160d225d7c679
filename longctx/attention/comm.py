"""Communication used by the attention kinds, over any process group.

`RingComm` passes tensors one step around a ring of group ranks with
`batch_isend_irecv`, addressing peers by their rank inside the group
(`group_peer`), so groups of any size with non-contiguous global ranks work.
`all_to_all_flat` is `all_to_all_single` on 1-D buffers with uneven splits.
Both skip empty messages (both sides know the sizes in advance) and count the
bytes this rank sends into an optional `TrafficCounter`.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class TrafficCounter:
    """Bytes this rank sent (payload only), summed over calls."""

    bytes_sent: int = 0


class RingComm:
    """Send to the next group rank, receive from the previous one."""

    def __init__(self, group: dist.ProcessGroup, traffic: TrafficCounter | None = None):
        self.group = group
        self.rank = dist.get_rank(group)
        self.size = dist.get_world_size(group)
        self.traffic = traffic

    def shift(self, send: list[torch.Tensor], recv: list[torch.Tensor], tag: int = 0) -> list[dist.Work]:
        """Start sending each of `send` to the next rank and receiving each of `recv` from the previous.

        Returns the requests; call `.wait()` on each before reading `recv`.
        The i-th send of one rank pairs with the i-th receive of the next (tag ``tag + i``).
        """
        next_rank, prev_rank = (self.rank + 1) % self.size, (self.rank - 1) % self.size
        ops = []
        for i, tensor in enumerate(send):
            if tensor.numel():
                ops.append(dist.P2POp(dist.isend, tensor, group=self.group, group_peer=next_rank, tag=tag + i))
                if self.traffic is not None:
                    self.traffic.bytes_sent += tensor.numel() * tensor.element_size()
        for i, tensor in enumerate(recv):
            if tensor.numel():
                ops.append(dist.P2POp(dist.irecv, tensor, group=self.group, group_peer=prev_rank, tag=tag + i))
        return dist.batch_isend_irecv(ops) if ops else []


def all_to_all_flat(
    parts: list[torch.Tensor], recv_numels: list[int], group: dist.ProcessGroup,
    traffic: TrafficCounter | None = None,
) -> list[torch.Tensor]:
    """Send the 1-D tensor `parts[j]` to group rank j; return the 1-D tensor received from each rank.

    All parts share one dtype; `recv_numels[i]` is the element count rank i sends here.
    """
    me = dist.get_rank(group)
    send = torch.cat(parts) if parts else torch.empty(0)
    recv = send.new_empty(sum(recv_numels))
    if traffic is not None:
        traffic.bytes_sent += (send.numel() - parts[me].numel()) * send.element_size()
    dist.all_to_all_single(
        recv, send, output_split_sizes=list(recv_numels), input_split_sizes=[p.numel() for p in parts], group=group
    )
    return list(torch.split(recv, list(recv_numels)))
