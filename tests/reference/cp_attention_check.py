"""Distributed attention checked against the dense float64 reference of `tests.reference.dense_attention`.

Nothing here goes through longctx's single-process attention: the expected
output and gradients come from a dense masked softmax in float64 over the
whole packed batch (document mask and positions built here from the lengths),
differentiated by autograd. The distributed side asks the sharding only which
global tokens a rank holds (`ZigzagSharding.token_index`), feeds the rank
exactly those rows, and the check puts every returned row back at its global
index itself, after asserting that the ranks' indices cover every token
exactly once.

Relative error (one number per quantity) = ``max |got - want| / max |want|``
over the whole tensor ("max"), or the root-mean-square variant ("rms"). Where the
reference is exactly zero everywhere (the q and k gradients of a batch of
one-token documents) the denominator is 1, the order of every quantity for
standard-normal inputs, and the error is absolute.
"""
from __future__ import annotations

import math
import torch
import torch.distributed as dist

from longctx.attention import ZigzagSharding, context_parallel_attention
from longctx.attention.parity import ParityCase as AttentionCase  # the case description only: no computation
from tests.reference.dense_attention import dense_attention, packed_docs

#: the compared quantities, in result order
QUANTITIES = ("out", "dq", "dk", "dv")
#: fp32 distributed vs the float64 reference: largest relative error (max norm) allowed
FP32_REL_TOL = 1e-5


def case_inputs(case: AttentionCase) -> list[torch.Tensor]:
    """q `[n, Hq, D]`, k, v `[n, Hkv, D]`, dout `[n, Hq, D]` of the whole batch, rounded to the case's dtype."""
    gen = torch.Generator().manual_seed(case.seed)
    n, d = sum(case.lengths), case.head_dim
    shapes = [(n, case.num_q_heads, d), (n, case.num_kv_heads, d), (n, case.num_kv_heads, d), (n, case.num_q_heads, d)]
    return [torch.randn(s, generator=gen).to(getattr(torch, case.dtype)) for s in shapes]


def run_distributed(case: AttentionCase, group: dist.ProcessGroup | None = None) -> list[torch.Tensor]:
    """On every rank of `group`: [global token index, out, dq, dk, dv] of the rows this rank holds."""
    group = group or dist.group.WORLD
    index = ZigzagSharding(case.cu_seqlens, dist.get_world_size(group)).token_index(dist.get_rank(group))
    q, k, v, dout = (t[index] for t in case_inputs(case))
    q, k, v = (t.requires_grad_() for t in (q, k, v))
    out = context_parallel_attention(q, k, v, case.cu_seqlens, kind=case.kind, group=group,
                                     ulysses_degree=case.ulysses_degree, backend=case.backend)
    out.backward(dout)
    return [index, out.detach(), q.grad, k.grad, v.grad]


def run_cases(cases: list[AttentionCase]) -> list[list[torch.Tensor]]:
    """`run_distributed` for each case on the default group (module level, for GlooPool)."""
    return [run_distributed(case) for case in cases]


def dense_results(case: AttentionCase) -> list[torch.Tensor]:
    """Float64 [out, dq, dk, dv] of the whole batch: dense document-masked causal attention + autograd."""
    q, k, v, dout = (t.double() for t in case_inputs(case))
    q, k, v = (t.requires_grad_() for t in (q, k, v))
    doc, pos = packed_docs(list(case.lengths))
    out, _ = dense_attention(q, k, v, doc, pos, doc, pos, 1.0 / math.sqrt(case.head_dim))
    out.backward(dout)
    return [out.detach(), q.grad, k.grad, v.grad]


def assemble(case: AttentionCase, per_rank: list[list[torch.Tensor]]) -> list[torch.Tensor]:
    """Whole-batch float64 [out, dq, dk, dv] from the ranks' rows, placed at their global indices.

    Raises AssertionError unless the ranks' indices cover every token exactly
    once and every result came back in the case's dtype.
    """
    indices, tokens = torch.cat([r[0] for r in per_rank]), sum(case.lengths)
    counts = torch.bincount(indices, minlength=tokens)
    if indices.numel() != tokens or counts.numel() != tokens or not bool((counts == 1).all()):
        raise AssertionError(f"{case}: the ranks' token indices do not cover the {tokens} tokens once each "
                             f"(per-rank counts {[int(r[0].numel()) for r in per_rank]})")
    whole = []
    for i, name in enumerate(QUANTITIES, start=1):
        dtypes = {r[i].dtype for r in per_rank}
        if dtypes != {getattr(torch, case.dtype)}:
            raise AssertionError(f"{case}: {name} came back as {dtypes}, expected {case.dtype}")
        rows = torch.cat([r[i] for r in per_rank]).double()
        full = torch.empty_like(rows)
        full[indices] = rows
        whole.append(full)
    return whole


def _nonzero(scale: torch.Tensor) -> torch.Tensor:
    """`scale`, or 1 where it is exactly 0 (see the module docstring)."""
    return scale if float(scale) > 0 else torch.ones_like(scale)


def relative_errors(case: AttentionCase, per_rank: list[list[torch.Tensor]],
                    reference: list[torch.Tensor] | None = None, norm: str = "max") -> dict[str, float]:
    """{quantity: relative error} of the assembled distributed results against the dense reference."""
    reference = dense_results(case) if reference is None else reference
    errors = {}
    for name, got, want in zip(QUANTITIES, assemble(case, per_rank), reference):
        if norm == "max":
            errors[name] = float((got - want).abs().max() / _nonzero(want.abs().max()))
        elif norm == "rms":
            errors[name] = float((got - want).square().mean().sqrt() / _nonzero(want.square().mean().sqrt()))
        else:
            raise ValueError(f"norm={norm!r} must be 'max' or 'rms'")
    return errors
