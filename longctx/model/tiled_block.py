"""Tiled layer checkpoint: a decoder block that keeps only its input and runs its token-wise parts over tiles.

`tiled_checkpointed_block(block, x, ...)` equals ``block(x, ...)`` (checkpointing
"tiled"). A block is two token-wise parts around attention:
``attention_inputs`` (RMSNorm, q/k/v projections, RoPE) and ``after_attention``
(output projection, residual, RMSNorm, SwiGLU, residual). Only attention needs
the whole shard at once. So:

* forward (no graph recorded): q/k/v `[n, heads, head_dim]` are built tile by
  tile, attention runs on the whole shard, the output is built tile by tile;
  only `x` `[n, dim]` is saved for backward (through the active saved-tensor
  hooks, i.e. offloaded with ``offload=checkpoints``).
* backward: q/k/v are rebuilt tile by tile without a graph, attention's forward
  runs again on the whole shard with a graph (its own communication included);
  ``after_attention`` is recomputed and back-propagated tile by tile, giving the
  input gradient's residual part and the attention output's gradient; then
  attention's backward gives dq/dk/dv for the whole shard; finally
  ``attention_inputs`` is recomputed and back-propagated tile by tile, adding the
  rest of the input gradient. Weight gradients accumulate over the tiles.

Peak extra memory while a block back-propagates, per token of the shard: q, k,
v, the attention output, its gradient, dq, dk, dv (matmul dtype), the incoming
and outgoing gradients of the block (residual dtype), the attention's own
log-sum-exp and buffers, plus one tile of every token-wise intermediate,
instead of every intermediate of the whole shard (checkpointing "full").
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ContextManager

import torch
from torch import nn

from longctx.attention import HybridPlan, run_planned
from longctx.model.activation_checkpoint import BlockArguments
from longctx.model.attention_layout import attention_plan
from longctx.model.autocast_state import capture, replay
from longctx.model.tiled_mlp import token_tiles


@dataclass
class _TiledCall(BlockArguments):
    tile_tokens: int
    #: the input gradient may be written into the incoming gradient's storage (see `tiled_checkpointed_block`)
    gradient_in_place: bool

    def tiles(self, n: int) -> list[slice]:
        return token_tiles(n, self.tile_tokens)

    def by_tiles(self, n: int, part: Callable[[slice], tuple[torch.Tensor, ...]]) -> tuple[torch.Tensor, ...]:
        """The outputs of `part(rows)` for every tile of `[0, n)`, written into whole-shard tensors (no graph)."""
        outputs: tuple[torch.Tensor, ...] = ()
        for tile in token_tiles(max(n, 1), self.tile_tokens):  # an empty shard still gets its empty outputs
            pieces = part(slice(tile.start, min(tile.stop, n)))
            if not outputs:
                outputs = tuple(p.new_empty((n, *p.shape[1:])) for p in pieces)
            for whole, piece in zip(outputs, pieces):
                whole[tile.start:tile.start + piece.shape[0]] = piece
        return outputs

    def attention_inputs(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """q `[n, n_heads, head_dim]`, k and v `[n, n_kv_heads, head_dim]` of the whole shard, tile by tile."""
        return self.by_tiles(x.shape[0], lambda t: self.block.attention_inputs(x[t], self.cos[t], self.sin[t]))

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Attention output `[n, n_heads, head_dim]` of the whole shard (builds the plan on the first call)."""
        if self.plan is None:
            self.plan = attention_plan(q, k, v, self.cu_seqlens, self.layout)
        with torch.autocast(q.device.type, enabled=False):
            return run_planned(q, k, v, self.plan)


def _accumulate(totals: list[torch.Tensor | None], grads) -> None:
    for i, grad in enumerate(grads):
        if grad is not None:
            totals[i] = grad if totals[i] is None else totals[i] + grad


class _TiledBlock(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, call: _TiledCall, *params):
        with call.weights(call.block):
            attended = call.attend(*call.attention_inputs(x))
            out, = call.by_tiles(x.shape[0], lambda t: (call.block.after_attention(x[t], attended[t]),))
        ctx.call, ctx.autocast = call, capture(x.device)
        ctx.save_for_backward(x)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        (x,), call = ctx.saved_tensors, ctx.call
        params = [p for p in call.block.parameters() if p.requires_grad]
        grads: list[torch.Tensor | None] = [None] * len(params)
        in_place = call.gradient_in_place and grad_out.is_contiguous() and grad_out.dtype == x.dtype
        grad_x = grad_out if in_place else torch.empty_like(x)
        with call.weights(call.block), torch.enable_grad(), replay(ctx.autocast):
            with torch.no_grad():
                q, k, v = call.attention_inputs(x)
            q, k, v = (t.requires_grad_() for t in (q, k, v))
            attended = call.attend(q, k, v)
            grad_attended = torch.empty_like(attended)
            for tile in call.tiles(x.shape[0]):  # row by row, so grad_x may overwrite grad_out tile by tile
                x_tile = x[tile].detach().requires_grad_()
                a_tile = attended[tile].detach().requires_grad_()
                found = torch.autograd.grad(call.block.after_attention(x_tile, a_tile), [x_tile, a_tile, *params],
                                            grad_out[tile], allow_unused=True)
                grad_x[tile], grad_attended[tile] = found[0], found[1]
                _accumulate(grads, found[2:])
            grad_q, grad_k, grad_v = torch.autograd.grad(attended, [q, k, v], grad_attended)
            del attended, grad_attended, q, k, v
            for tile in call.tiles(x.shape[0]):
                x_tile = x[tile].detach().requires_grad_()
                outputs = call.block.attention_inputs(x_tile, call.cos[tile], call.sin[tile])
                found = torch.autograd.grad(outputs, [x_tile, *params], (grad_q[tile], grad_k[tile], grad_v[tile]),
                                            allow_unused=True)
                grad_x[tile] += found[0]
                _accumulate(grads, found[1:])
        by_param = dict(zip(map(id, params), grads))
        return grad_x, None, *(by_param.get(id(p)) for p in call.block.parameters())


def tiled_checkpointed_block(block: nn.Module, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                             cu_seqlens: Any, layout: Any, plan: HybridPlan | None, *, tile_tokens: int,
                             weights: Callable[[nn.Module], ContextManager],
                             gradient_in_place: bool = False) -> tuple[torch.Tensor, HybridPlan]:
    """``block(x, ...)`` for `x` `[n, dim]` keeping only `x`, token-wise parts over `tile_tokens`-token tiles;
    returns (output `[n, dim]`, attention plan). `weights(block)` wraps every use of the block's weights.

    `gradient_in_place`: the backward writes the input gradient over the output's gradient (one `[n, dim]`
    buffer fewer). Only for callers whose output gradient nothing else reads: autograd hands the same
    gradient tensor to every input of an addition, so an output that is also summed elsewhere must not
    use it. The decoder's blocks qualify: each output's only consumer is the next block or the head,
    whose backward returns a fresh gradient."""
    call = _TiledCall(block, cos, sin, cu_seqlens, layout, plan, weights, tile_tokens, gradient_in_place)
    out = _TiledBlock.apply(x, call, *block.parameters())
    return out, call.plan
