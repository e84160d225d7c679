"""Ulysses exchange: all-to-all between the sequence and the head dimension.

Before attention each of the U members holds its own tokens for all heads;
after `seq_to_heads` every member holds all U members' tokens, re-sorted by
global token index (so by (doc, pos), as the local kernel needs), for its slice
of the heads (`longctx.attention.heads.split_heads`: uneven when the heads do
not divide U; kv heads only as its query heads need). `heads_to_seq` is the
inverse; heads held by several members (a kv head shared when Hkv < U) have
their gradients summed in fp32 on the way back.
"""
from __future__ import annotations

import torch

from longctx.attention.comm import MemberComm

#: head range [lo, hi) of one tensor for each member
HeadRanges = list[tuple[int, int]]


class UlyssesExchange:
    """Sequence <-> head all-to-all among the members of `comm`.

    member_tokens[i]: global token indices `[n_i]` held by member i.
    """

    def __init__(self, comm: MemberComm, member_tokens: list[torch.Tensor]):
        self.comm = comm
        self.me = comm.index
        self.counts = [t.numel() for t in member_tokens]
        gathered = torch.cat(member_tokens)
        #: position in the gathered (member-major) order of each sorted token
        self.order = torch.argsort(gathered)
        #: global token indices `[N]` held after `seq_to_heads`, ascending
        self.token_index = gathered[self.order]

    def seq_to_heads(self, tensors: list[torch.Tensor], ranges: list[HeadRanges]) -> list[torch.Tensor]:
        """tensors[t] `[n_me, H_t, D]` -> `[N, w_t, D]`: all tokens (sorted) of this member's heads of t.

        ranges[t][j] is the head range of tensor t that member j receives.
        """
        head_dim = tensors[0].shape[2]
        parts = [
            torch.cat([x[:, r[j][0] : r[j][1]].reshape(-1) for x, r in zip(tensors, ranges)])
            for j in range(len(self.counts))
        ]
        widths = [r[self.me][1] - r[self.me][0] for r in ranges]
        received = self.comm.all_to_all(parts, [n * sum(widths) * head_dim for n in self.counts])
        by_source = [torch.split(buf, [n * w * head_dim for w in widths]) for buf, n in zip(received, self.counts)]
        order = self.order.to(tensors[0].device)
        return [
            torch.cat([pieces[t].view(n, w, head_dim) for pieces, n in zip(by_source, self.counts)])[order]
            for t, w in enumerate(widths)
        ]

    def heads_to_seq(self, tensors: list[torch.Tensor], ranges: list[HeadRanges],
                     num_heads: list[int]) -> list[torch.Tensor]:
        """Inverse of `seq_to_heads`: tensors[t] `[N, w_t, D]` -> `[n_me, num_heads[t], D]`.

        Heads that several members return are summed (in fp32); the result has
        the dtype of tensors[t].
        """
        head_dim = tensors[0].shape[2]
        order = self.order.to(tensors[0].device)
        member_order = []
        for x in tensors:
            unsorted = torch.empty_like(x)
            unsorted[order] = x
            member_order.append(torch.split(unsorted, self.counts))
        parts = [torch.cat([rows[i].reshape(-1) for rows in member_order]) for i in range(len(self.counts))]
        n_me = self.counts[self.me]
        recv_widths = [[r[j][1] - r[j][0] for r in ranges] for j in range(len(self.counts))]
        received = self.comm.all_to_all(parts, [n_me * sum(w) * head_dim for w in recv_widths])
        results = [torch.zeros(n_me, h, head_dim, dtype=torch.float32, device=x.device)
                   for h, x in zip(num_heads, tensors)]
        for j, buf in enumerate(received):
            pieces = torch.split(buf, [n_me * w * head_dim for w in recv_widths[j]])
            for t, (piece, w) in enumerate(zip(pieces, recv_widths[j])):
                lo, hi = ranges[t][j]
                results[t][:, lo:hi] += piece.view(n_me, w, head_dim).float()
        return [r.to(x.dtype) for r, x in zip(results, tensors)]
