"""Distributed-vs-single-process parity of context-parallel attention (used by tests and the demo).

`run_cases` runs on every rank of a gloo (or NCCL) world: for each case it
builds the same random packed batch on every rank from the case's seed and
returns the distributed forward output and q/k/v gradients of this rank's
zigzag shard. `relative_errors` (in the parent) unshards them and compares
with the single-process fp32 reference on the unsharded batch.

Error definition (one number per quantity): relative error =
``max |distributed - reference| / max |reference|`` over the whole tensor,
i.e. the largest absolute deviation scaled by the tensor's largest magnitude
(`relative_errors(norm="rms")` gives the root-mean-square variant).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist

from longctx.attention import ZigzagSharding, context_parallel_attention

#: the quantities compared
QUANTITIES = ("out", "dq", "dk", "dv")
#: fp32 distributed vs fp32 single-process: the largest relative error (max norm) allowed
PARITY_REL_TOL = 1e-5


@dataclass(frozen=True)
class ParityCase:
    """One packed batch and one kind of attention to check."""

    lengths: tuple[int, ...]
    num_q_heads: int = 8
    num_kv_heads: int = 2
    head_dim: int = 16
    kind: str = "ring"
    ulysses_degree: int | None = None
    dtype: str = "float32"
    seed: int = 0
    #: local-kernel backend of the distributed run (the single-process side is always "reference")
    backend: str = "reference"

    def __post_init__(self):
        if not self.lengths or min(self.lengths) < 1:
            raise ValueError(f"ParityCase.lengths={self.lengths} must be a non-empty list of positive lengths")
        if self.dtype not in ("float32", "bfloat16"):
            raise ValueError(f"ParityCase.dtype={self.dtype!r} must be 'float32' or 'bfloat16'")

    @property
    def cu_seqlens(self) -> list[int]:
        out = [0]
        for n in self.lengths:
            out.append(out[-1] + n)
        return out


def _inputs(case: ParityCase) -> list[torch.Tensor]:
    """q, k, v, dout over the whole batch, fp32, identical on every rank."""
    gen = torch.Generator().manual_seed(case.seed)
    n, d = sum(case.lengths), case.head_dim
    shapes = [(n, case.num_q_heads, d), (n, case.num_kv_heads, d), (n, case.num_kv_heads, d), (n, case.num_q_heads, d)]
    return [torch.randn(s, generator=gen) for s in shapes]


def _forward_backward(q, k, v, dout, cu_seqlens, **kwargs) -> list[torch.Tensor]:
    q, k, v = (t.detach().requires_grad_() for t in (q, k, v))
    out = context_parallel_attention(q, k, v, cu_seqlens, **kwargs)
    out.backward(dout)
    return [out.detach(), q.grad, k.grad, v.grad]


def distributed_results(case: ParityCase, group: dist.ProcessGroup | None = None) -> list[torch.Tensor]:
    """On every rank of `group`: this rank's [out, dq, dk, dv] for `case` (in the case's dtype)."""
    group = group or dist.group.WORLD
    size, rank = dist.get_world_size(group), dist.get_rank(group)
    sharding = ZigzagSharding(case.cu_seqlens, size)
    local = [sharding.shard(t, rank).to(getattr(torch, case.dtype)) for t in _inputs(case)]
    return _forward_backward(
        *local, case.cu_seqlens, kind=case.kind, group=group, ulysses_degree=case.ulysses_degree, backend=case.backend
    )


def run_cases(cases: list[ParityCase]) -> list[list[torch.Tensor]]:
    """`distributed_results` for each case on the default group (module-level, for GlooPool)."""
    return [distributed_results(case) for case in cases]


def reference_results(case: ParityCase) -> list[torch.Tensor]:
    """Single-process fp32 [out, dq, dk, dv] on the unsharded batch (inputs rounded to the case's dtype)."""
    inputs = [t.to(getattr(torch, case.dtype)).float() for t in _inputs(case)]
    return _forward_backward(*inputs, case.cu_seqlens, kind="local", backend="reference")


def relative_errors(case: ParityCase, per_rank: list[list[torch.Tensor]],
                    reference: list[torch.Tensor] | None = None, norm: str = "max") -> dict[str, float]:
    """{quantity: |distributed - reference| / |reference|} for one case's per-rank results.

    norm "max": max abs deviation / max abs reference (the parity measure);
    "rms": root-mean-square deviation / root-mean-square reference (a less
    noisy measure for comparing low-precision runs); "abs": max abs deviation.
    """
    if norm not in ("max", "rms", "abs"):
        raise ValueError(f"norm={norm!r} must be 'max', 'rms' or 'abs'")
    reference = reference_results(case) if reference is None else reference
    sharding = ZigzagSharding(case.cu_seqlens, len(per_rank))
    errors = {}
    for i, name in enumerate(QUANTITIES):
        shards = [r[i] for r in per_rank]
        dtypes = {s.dtype for s in shards}
        if dtypes != {getattr(torch, case.dtype)}:
            raise AssertionError(f"{name} came back as {dtypes}, expected {case.dtype}")
        got, want = sharding.unshard([s.float() for s in shards]), reference[i]
        if norm == "abs":
            errors[name] = float((got - want).abs().max())
        elif norm == "max":
            errors[name] = float((got - want).abs().max() / want.abs().max())
        else:
            errors[name] = float((got - want).square().mean().sqrt() / want.square().mean().sqrt())
    return errors
