"""Output head + cross-entropy over token tiles, never holding the whole `[tokens, vocab]` logits.

`tiled_head_loss(hidden, head_weight, targets, step_targets, tile_tokens)`
equals ``step_loss(at_least_fp32(hidden @ head_weight.T), targets, step_targets)``.
The forward computes each tile's logits (`[tile, vocab]`, at least fp32), adds
its summed cross-entropy and drops them; only `hidden` and `targets` are kept.
The backward recomputes each tile's logits and back-propagates that tile's
loss, writing the tile's rows of the hidden gradient and accumulating the head
weight's gradient over the tiles. Peak extra memory: one tile's logits and
their gradient, ``2 * tile_tokens * vocab`` fp32 values.
"""
from __future__ import annotations

import torch
from torch.nn import functional as F

from longctx.model.autocast_state import capture, replay
from longctx.model.layers import at_least_fp32
from longctx.model.loss import step_loss
from longctx.model.tiled_mlp import token_tiles


def _tile_loss(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, step_targets: int) -> torch.Tensor:
    return step_loss(at_least_fp32(F.linear(hidden, weight)), targets, step_targets)


class _TiledHeadLoss(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, targets, step_targets: int, tile_tokens: int):
        total = torch.zeros((), dtype=torch.promote_types(hidden.dtype, torch.float32), device=hidden.device)
        for tile in token_tiles(hidden.shape[0], tile_tokens):
            total += _tile_loss(hidden[tile], weight, targets[tile], step_targets)
        ctx.save_for_backward(hidden, weight, targets)
        ctx.step_targets, ctx.tile_tokens, ctx.autocast = step_targets, tile_tokens, capture(hidden.device)
        return total

    @staticmethod
    def backward(ctx, grad_loss):
        hidden, weight, targets = ctx.saved_tensors
        grad_hidden = torch.zeros_like(hidden) if ctx.needs_input_grad[0] else None
        grad_weight = torch.zeros_like(weight) if ctx.needs_input_grad[1] else None
        weight_leaf = weight.detach().requires_grad_(grad_weight is not None)
        for tile in token_tiles(hidden.shape[0], ctx.tile_tokens):
            with torch.enable_grad(), replay(ctx.autocast):
                hidden_tile = hidden[tile].detach().requires_grad_(grad_hidden is not None)
                wanted = [t for t in (hidden_tile, weight_leaf) if t.requires_grad]
                loss = _tile_loss(hidden_tile, weight_leaf, targets[tile], ctx.step_targets)
                grads = iter(torch.autograd.grad(loss, wanted, grad_loss))
            if grad_hidden is not None:
                grad_hidden[tile] = next(grads)
            if grad_weight is not None:
                grad_weight += next(grads)
        return grad_hidden, grad_weight, None, None, None


def tiled_head_loss(hidden: torch.Tensor, head_weight: torch.Tensor, targets: torch.Tensor, step_targets: int,
                    tile_tokens: int) -> torch.Tensor:
    """``sum CE(hidden @ head_weight.T, targets) / step_targets`` over tiles of `tile_tokens` rows.

    hidden `[n, dim]`, head_weight `[vocab, dim]`, targets `[n]` (IGNORE rows count nothing).
    """
    if step_targets < 1:
        raise ValueError(f"tiled_head_loss: step_targets={step_targets}; a step needs at least one target token")
    return _TiledHeadLoss.apply(hidden, head_weight, targets, step_targets, tile_tokens)
