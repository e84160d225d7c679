"""Final norm + output head + cross-entropy over token tiles, never holding the whole `[tokens, vocab]` logits.

`tiled_head_loss(hidden, norm, head, targets, step_targets, tile_tokens)`
equals ``step_loss(at_least_fp32(head(norm(hidden))), targets, step_targets)``.
The forward computes each tile's normalised hidden state and logits
(`[tile, vocab]`, at least fp32), adds its summed cross-entropy and drops them;
only `hidden` and `targets` are kept (the final RMSNorm's intermediates are
never whole-shard either). The backward recomputes each tile and
back-propagates that tile's loss, writing the tile's rows of the hidden
gradient and accumulating the norm's and head's weight gradients over the
tiles. Peak extra memory: one tile's normalised rows, logits and their gradient,
about ``2 * tile_tokens * vocab`` fp32 values.
"""
from __future__ import annotations

import contextlib
from typing import Callable, ContextManager

import torch
from torch import nn
from torch.nn import functional as F

from longctx.model.activation_memory import resident_weights
from longctx.model.autocast_state import capture, replay
from longctx.model.layers import RMSNorm, at_least_fp32, rms_norm
from longctx.model.loss import step_loss
from longctx.model.tiled_mlp import token_tiles


def _tile_loss(hidden: torch.Tensor, norm_weight: torch.Tensor, head_weight: torch.Tensor, eps: float,
               targets: torch.Tensor, step_targets: int) -> torch.Tensor:
    logits = at_least_fp32(F.linear(rms_norm(hidden, norm_weight, eps), head_weight))
    return step_loss(logits, targets, step_targets)


class _TiledHeadLoss(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, norm_weight, head_weight, targets, step_targets: int, tile_tokens: int, eps: float,
                weights: Callable[[], ContextManager]):
        total = torch.zeros((), dtype=torch.promote_types(hidden.dtype, torch.float32), device=hidden.device)
        with weights():
            for tile in token_tiles(hidden.shape[0], tile_tokens):
                total += _tile_loss(hidden[tile], norm_weight, head_weight, eps, targets[tile], step_targets)
        ctx.save_for_backward(hidden, targets)
        ctx.params = (norm_weight, head_weight)  # not saved tensors: parameter offload may release them in between
        ctx.step_targets, ctx.tile_tokens, ctx.eps, ctx.weights = step_targets, tile_tokens, eps, weights
        ctx.autocast = capture(hidden.device)
        return total

    @staticmethod
    def backward(ctx, grad_loss):
        hidden, targets = ctx.saved_tensors
        wanted = ctx.needs_input_grad[:3]
        grads: list[torch.Tensor | None] = [torch.zeros_like(hidden) if wanted[0] else None, None, None]
        with ctx.weights():
            leaves = [p.detach().requires_grad_(needed) for p, needed in zip(ctx.params, wanted[1:])]
            for tile in token_tiles(hidden.shape[0], ctx.tile_tokens):
                with torch.enable_grad(), replay(ctx.autocast):
                    hidden_tile = hidden[tile].detach().requires_grad_(wanted[0])
                    inputs = [t for t in (hidden_tile, *leaves) if t.requires_grad]
                    loss = _tile_loss(hidden_tile, *leaves, ctx.eps, targets[tile], ctx.step_targets)
                    found = iter(torch.autograd.grad(loss, inputs, grad_loss))
                if wanted[0]:
                    grads[0][tile] = next(found)
                for i in (1, 2):
                    if wanted[i]:
                        grad = next(found)
                        grads[i] = grad if grads[i] is None else grads[i] + grad
        for i, p in ((1, ctx.params[0]), (2, ctx.params[1])):
            if wanted[i] and grads[i] is None:  # an empty shard: zero gradients, as the whole-logits loss gives
                grads[i] = torch.zeros_like(p)
        return (*grads, None, None, None, None, None)


def tiled_head_loss(hidden: torch.Tensor, norm: RMSNorm, head: nn.Linear, targets: torch.Tensor, step_targets: int,
                    tile_tokens: int, weights: Callable[[nn.Module], ContextManager] = resident_weights) -> torch.Tensor:
    """``sum CE(head(norm(hidden)), targets) / step_targets`` over tiles of `tile_tokens` rows.

    hidden `[n, dim]` (the last block's output), norm: the final RMSNorm, head: the output head
    (`weight` `[vocab, dim]`), targets `[n]` (IGNORE rows count nothing). `weights(module)` wraps every use
    of the norm's and head's weights (forward and backward; see `ActivationMemory.weights`).
    """
    if step_targets < 1:
        raise ValueError(f"tiled_head_loss: step_targets={step_targets}; a step needs at least one target token")

    @contextlib.contextmanager
    def both() -> ContextManager:
        with weights(norm), weights(head):
            yield

    return _TiledHeadLoss.apply(hidden, norm.weight, head.weight, targets, step_targets, tile_tokens, norm.eps, both)
