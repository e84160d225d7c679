"""Ring attention: K/V blocks travel around a group, partial results merge by log-sum-exp.

Ring member i holds queries and keys of the tokens `RingLayout.doc[i]` /
`RingLayout.pos[i]` (derived from the zigzag sharding, never sent). At step t
member r works on the K/V block of member (r - t) mod P while the next block is
already in flight; blocks the mask empties (no query of this member sees any
key of the block) are skipped. Which (member, source) pairs see each other is
decided once per plan on the host (`RingLayout.sees`), and each member's
doc/pos go to the device once, so a ring step never waits on the host. K/V
travel at their own (kv) head count.

Forward keeps the running output and lse in fp32 and casts once at the end, so
bf16 error does not grow with the ring size (merges through the CUDA op on
CUDA, see `merge.merge_block`). Backward recomputes each block against the
final (out, lse): dQ accumulates locally, and each block's dK/dV (fp32) travel
with it around the ring, arriving back at the owner after P shifts; a block's
dK/dV shift is in flight while the next block's gradients are computed.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from longctx.attention.comm import MemberComm
from longctx.attention.heads import SliceKernel
from longctx.attention.merge import merge_block


@dataclass(frozen=True)
class RingLayout:
    """Document id and in-document position `[n_i]` (int64, host) of the tokens of every ring member i."""

    doc: list[torch.Tensor]
    pos: list[torch.Tensor]
    _sees: dict = field(default_factory=dict, compare=False, repr=False)
    _on_device: dict = field(default_factory=dict, compare=False, repr=False)

    def num_tokens(self, member: int) -> int:
        return self.doc[member].numel()

    def sees(self, member: int, source: int) -> bool:
        """Whether some query of `member` sees some key of `source` (host computation, cached)."""
        key = (member, source)
        if key not in self._sees:
            self._sees[key] = blocks_overlap(self.doc[member], self.pos[member], self.doc[source], self.pos[source])
        return self._sees[key]

    def meta(self, member: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """(doc, pos) of `member` on `device` (copied once, cached)."""
        key = (member, device)
        if key not in self._on_device:
            self._on_device[key] = (self.doc[member].to(device), self.pos[member].to(device))
        return self._on_device[key]


def blocks_overlap(q_doc, q_pos, k_doc, k_pos) -> bool:
    """True when some query sees some key (same document, key position <= query position)."""
    if q_doc.numel() == 0 or k_doc.numel() == 0:
        return False
    num_docs = int(max(q_doc.max(), k_doc.max())) + 1
    last_query = torch.full((num_docs,), -1, dtype=torch.int64, device=q_doc.device)
    last_query = last_query.scatter_reduce(0, q_doc, q_pos, "amax")
    first_key = torch.full((num_docs,), 2**62, dtype=torch.int64, device=k_doc.device)
    first_key = first_key.scatter_reduce(0, k_doc, k_pos, "amin")
    return bool((first_key <= last_query).any())


def _block_kv(k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Pack k, v `[n, Hkv, D]` into one contiguous message `[2, n, Hkv, D]`."""
    return torch.stack([k, v])


def _empty_block(like: torch.Tensor, tokens: int, dtype: torch.dtype | None = None) -> torch.Tensor:
    return like.new_empty((2, tokens, *like.shape[2:]), dtype=dtype or like.dtype)


def ring_forward(q, k, v, layout: RingLayout, comm: MemberComm | None, kernel: SliceKernel):
    """This member's attention over all members' K/V.

    q `[n, Hq, D]`, k/v `[n, Hkv, D]`: this member's tokens. Returns
    (out `[n, Hq, D]` fp32, lse `[n, Hq]` fp32). `comm` None means a ring of one.
    """
    me, size = (comm.index, comm.size) if comm else (0, 1)
    q_doc, q_pos = layout.meta(me, q.device)
    out = torch.zeros(q.shape, dtype=torch.float32, device=q.device)
    lse = torch.full(q.shape[:2], float("-inf"), dtype=torch.float32, device=q.device)
    block = _block_kv(k, v)
    for step in range(size):
        source = (me - step) % size
        if step < size - 1:
            incoming = _empty_block(block, layout.num_tokens((source - 1) % size))
            pending = comm.shift([block], [incoming])
        if layout.sees(me, source):
            k_doc, k_pos = layout.meta(source, q.device)
            block_out, block_lse = kernel.forward(q, block[0], block[1], q_doc, q_pos, k_doc, k_pos)
            out, lse = merge_block(out, lse, block_out, block_lse)
        if step < size - 1:
            for request in pending:
                request.wait()
            block = incoming
    return out, lse


def ring_backward(dout, q, k, v, out, lse, layout: RingLayout, comm: MemberComm | None, kernel: SliceKernel):
    """Gradients (dq, dk, dv) of this member's tokens, in the input dtypes.

    dout/out `[n, Hq, D]`, lse `[n, Hq]`: the final results of this member's rows.
    At step t this member adds its dK/dV of the block it holds to the sum the
    previous members sent for that block (received while it computed), and
    sends the sum on without waiting; the sum that arrives after the last step
    is its own block's complete gradient.
    """
    me, size = (comm.index, comm.size) if comm else (0, 1)
    q_doc, q_pos = layout.meta(me, q.device)
    dq = torch.zeros(q.shape, dtype=torch.float32, device=q.device)
    block = _block_kv(k, v)
    travelling: tuple[list, torch.Tensor] | None = None  # (requests, buffer): dK/dV sum arriving for `block`
    for step in range(size):
        source = (me - step) % size
        previous = (source - 1) % size
        pending = []
        if step < size - 1:
            incoming = _empty_block(block, layout.num_tokens(previous))
            pending = comm.shift([block], [incoming])
        block_grad = torch.zeros(block.shape, dtype=torch.float32, device=q.device)
        if layout.sees(me, source):
            k_doc, k_pos = layout.meta(source, q.device)
            dq_b, dk_b, dv_b = kernel.backward(dout, q, block[0], block[1], out, lse, q_doc, q_pos, k_doc, k_pos)
            dq += dq_b.float()
            block_grad[0] += dk_b.float()
            block_grad[1] += dv_b.float()
        if travelling is not None:
            for request in travelling[0]:
                request.wait()
            block_grad += travelling[1]
        if size > 1:
            incoming_grad = _empty_block(block, layout.num_tokens(previous), torch.float32)
            travelling = (comm.shift([block_grad], [incoming_grad], tag=1), incoming_grad)
        for request in pending:
            request.wait()
        if step < size - 1:
            block = incoming
    if travelling is not None:
        for request in travelling[0]:
            request.wait()
        block_grad = travelling[1]
    return dq.to(q.dtype), block_grad[0].to(k.dtype), block_grad[1].to(v.dtype)
