"""Layer checkpoints: a decoder block that keeps only its input (full) or its input and attention output (selective).

`checkpointed_block(block, x, ...)` equals ``block(x, ...)``. Its forward runs
the block without recording a graph and saves for backward:

* full: the block's input `x` `[n, dim]`;
* selective: `x`, the attention output in the attention's own layout (`[n', Hq', D]`,
  after Ulysses' all-to-all when the group uses one) and its log-sum-exp.

Its backward re-runs the block's forward (in the forward's autocast state)
with gradients from `x` and back-propagates through it. Full recomputes attention too (and so repeats its
communication); selective replays the kept output and log-sum-exp instead of
the attention forward (`_ReplayedAttention`: only the cheap projections, norms,
RoPE and MLP are recomputed, plus Ulysses' all-to-all of q/k/v when the group
uses one), then runs the attention's own backward.

The tensors saved by the checkpoint are saved inside whatever saved-tensor
hooks are active around the call (`ActivationMemory.scope`), which is how the
runtime offloads the checkpoints and counts their bytes; the transient graph
of the selective forward's attention call is kept out of those hooks.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ContextManager

import torch
from torch import nn

from longctx.attention import HybridPlan, run_planned
from longctx.attention.hybrid import HybridAttention, exchanged_forward
from longctx.model.autocast_state import capture, replay


def _same(tensor: torch.Tensor) -> torch.Tensor:
    return tensor


class _ReplayedAttention(HybridAttention):
    """HybridAttention whose forward returns a kept output instead of computing it; same backward."""

    @staticmethod
    def forward(ctx, q, k, v, plan: HybridPlan, out, lse):
        return exchanged_forward(ctx, q, k, v, plan, lambda *_: (out, lse))

    @staticmethod
    def backward(ctx, dout):
        return (*HybridAttention.backward(ctx, dout), None, None)


def _capturing(kept: list[torch.Tensor]) -> Callable:
    """An attention core that runs `run_planned` and appends its output and lse (attention layout) to `kept`."""

    def core(q, k, v, plan):
        with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(_same, _same):
            out = run_planned(q.detach().requires_grad_(), k.detach().requires_grad_(),
                              v.detach().requires_grad_(), plan)
            *_, out_heads, lse = out.grad_fn.saved_tensors  # HybridAttention saves (q, k, v, out, lse)
        kept.extend((out_heads.detach(), lse.detach()))
        return out.detach()

    return core


def _replaying(out_heads: torch.Tensor, lse: torch.Tensor) -> Callable:
    def core(q, k, v, plan):
        return _ReplayedAttention.apply(q, k, v, plan, out_heads, lse)

    return core


@dataclass
class BlockArguments:
    """The non-tensor arguments of one checkpointed block call (the plan is filled by the first layer's forward);
    `weights(block)` wraps every use of the block's weights."""

    block: nn.Module
    cos: torch.Tensor
    sin: torch.Tensor
    cu_seqlens: Any
    layout: Any
    plan: HybridPlan | None
    weights: Callable[[nn.Module], ContextManager]


@dataclass
class _BlockCall(BlockArguments):
    selective: bool
    mlp_tile_tokens: int | None

    def run(self, x: torch.Tensor, core: Callable) -> torch.Tensor:
        out, self.plan = self.block(x, self.cos, self.sin, self.cu_seqlens, self.layout, self.plan, core,
                                    self.mlp_tile_tokens)
        return out


class _CheckpointedBlock(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, call: _BlockCall, *params):
        kept: list[torch.Tensor] = []
        with call.weights(call.block):
            out = call.run(x, _capturing(kept) if call.selective else run_planned)
        ctx.call, ctx.autocast = call, capture(x.device)
        ctx.save_for_backward(x, *kept)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        x, *kept = ctx.saved_tensors
        call = ctx.call
        params = list(call.block.parameters())
        wanted_params = [p for p, needed in zip(params, ctx.needs_input_grad[2:]) if needed]
        with call.weights(call.block), torch.enable_grad(), replay(ctx.autocast):
            x_leaf = x.detach().requires_grad_()
            out = call.run(x_leaf, _replaying(*kept) if kept else run_planned)
            grads = torch.autograd.grad(out, [x_leaf, *wanted_params], grad_out, allow_unused=True)
        by_param = dict(zip(map(id, wanted_params), grads[1:]))
        return (grads[0] if ctx.needs_input_grad[0] else None, None, *(by_param.get(id(p)) for p in params))


def checkpointed_block(block: nn.Module, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, cu_seqlens: Any,
                       layout: Any, plan: HybridPlan | None, *, selective: bool,
                       mlp_tile_tokens: int | None,
                       weights: Callable[[nn.Module], ContextManager]) -> tuple[torch.Tensor, HybridPlan]:
    """``block(x, ...)`` keeping only the checkpoint for backward; returns (output `[n, dim]`, attention plan).
    `weights(block)` wraps every use of the block's weights (forward, recompute and backward)."""
    call = _BlockCall(block, cos, sin, cu_seqlens, layout, plan, weights, selective, mlp_tile_tokens)
    out = _CheckpointedBlock.apply(x, call, *block.parameters())
    return out, call.plan
