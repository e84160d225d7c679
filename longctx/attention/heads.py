"""Uneven head splits for Ulysses, and a local kernel bound to one rank's head slice.

Query heads are split over the Ulysses degree as evenly as possible (the first
``Hq % degree`` ranks get one more; a rank may get none). A rank receives only
the kv heads its query heads read (GQA: query head h reads kv head h // G with
G = Hq // Hkv), so when Hkv < degree a kv head goes to several ranks but is
never repeated per query head.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from longctx.attention.backends import Backend


@dataclass(frozen=True)
class HeadSlice:
    """Query heads [q_start, q_end) and the kv heads [kv_start, kv_end) they read; G = Hq // Hkv."""

    q_start: int
    q_end: int
    kv_start: int
    kv_end: int
    group: int

    @property
    def num_q(self) -> int:
        return self.q_end - self.q_start

    @property
    def num_kv(self) -> int:
        return self.kv_end - self.kv_start

    def runs(self) -> list[tuple[int, int, int]]:
        """(local q start, local q end, local kv head) for each kv head, in order."""
        out = []
        for kv in range(self.kv_start, self.kv_end):
            lo = max(self.q_start, kv * self.group) - self.q_start
            hi = min(self.q_end, (kv + 1) * self.group) - self.q_start
            out.append((lo, hi, kv - self.kv_start))
        return out

    def is_uniform(self) -> bool:
        """True when every kv head serves the same number of local query heads (one kernel call)."""
        return len({hi - lo for lo, hi, _ in self.runs()}) <= 1


def split_heads(num_q: int, num_kv: int, degree: int) -> list[HeadSlice]:
    """Split `num_q` query heads (and the kv heads they need) over `degree` ranks."""
    group = num_q // num_kv
    base, extra = divmod(num_q, degree)
    slices, start = [], 0
    for rank in range(degree):
        end = start + base + (1 if rank < extra else 0)
        kv_start = start // group
        kv_end = (end - 1) // group + 1 if end > start else kv_start
        slices.append(HeadSlice(start, end, kv_start, kv_end, group))
        start = end
    return slices


class SliceKernel:
    """A backend bound to a softmax scale and one rank's `HeadSlice`.

    When the slice's query heads map onto its kv heads uniformly the backend is
    called once; otherwise once per kv head (a slice that starts or ends in the
    middle of a GQA group).
    """

    def __init__(self, backend: Backend, softmax_scale: float, heads: HeadSlice | None):
        self.backend = backend
        self.scale = softmax_scale
        self.heads = heads

    def _single_call(self) -> bool:
        return self.heads is None or self.heads.is_uniform()

    def forward(self, q, k, v, q_doc, q_pos, k_doc, k_pos):
        """(out `[Nq, Hq_local, D]`, lse `[Nq, Hq_local]` fp32); a slice of no heads gives empty results."""
        if q.shape[1] == 0:
            return torch.empty_like(q), torch.empty(q.shape[:2], dtype=torch.float32, device=q.device)
        if self._single_call():
            return self.backend.forward(q, k, v, q_doc, q_pos, k_doc, k_pos, self.scale)
        parts = [
            self.backend.forward(q[:, lo:hi], k[:, j : j + 1], v[:, j : j + 1], q_doc, q_pos, k_doc, k_pos, self.scale)
            for lo, hi, j in self.heads.runs()
        ]
        return torch.cat([o for o, _ in parts], 1), torch.cat([l for _, l in parts], 1)

    def backward(self, dout, q, k, v, out, lse, q_doc, q_pos, k_doc, k_pos):
        """(dq, dk, dv) in the input dtypes."""
        if q.shape[1] == 0:
            return torch.empty_like(q), torch.zeros_like(k), torch.zeros_like(v)
        if self._single_call():
            return self.backend.backward(dout, q, k, v, out, lse, q_doc, q_pos, k_doc, k_pos, self.scale)
        dq = torch.empty_like(q)
        dk = torch.zeros(k.shape, dtype=torch.float32, device=k.device)
        dv = torch.zeros_like(dk)
        for lo, hi, j in self.heads.runs():
            dq_r, dk_r, dv_r = self.backend.backward(
                dout[:, lo:hi], q[:, lo:hi], k[:, j : j + 1], v[:, j : j + 1], out[:, lo:hi], lse[:, lo:hi],
                q_doc, q_pos, k_doc, k_pos, self.scale,
            )
            dq[:, lo:hi] = dq_r
            dk[:, j : j + 1] += dk_r.float()
            dv[:, j : j + 1] += dv_r.float()
        return dq, dk.to(k.dtype), dv.to(v.dtype)
