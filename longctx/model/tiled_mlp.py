"""TiledMLP: the SwiGLU feed-forward over token tiles, never holding the whole `[tokens, ffn]`.

`tiled_swiglu(mlp, x, tile_tokens)` equals ``mlp(x)``. The forward runs tile by
tile without recording a graph and keeps only `x` for backward; the backward
recomputes each tile's forward (`gate`, `up` and the product: three
`[tile, ffn]` tensors) and back-propagates it at once, accumulating the weight
gradients over the tiles. Peak extra memory is one tile's intermediates instead
of the whole shard's: ``3 * tile_tokens * ffn_dim`` elements instead of
``3 * n * ffn_dim``.
"""
from __future__ import annotations

import torch

from longctx.model.autocast_state import capture, replay
from longctx.model.layers import SwiGLU, swiglu


def token_tiles(n: int, tile_tokens: int) -> list[slice]:
    """Consecutive slices of at most `tile_tokens` rows covering `[0, n)` (none when n == 0)."""
    if tile_tokens < 1:
        raise ValueError(f"tile_tokens={tile_tokens} must be >= 1")
    return [slice(start, min(start + tile_tokens, n)) for start in range(0, n, tile_tokens)]


class _TiledSwiGLU(torch.autograd.Function):
    """Autograd of `swiglu` over token tiles with per-tile recomputation in backward."""

    @staticmethod
    def forward(ctx, x, tile_tokens: int, gate, up, down):
        out = x.new_empty(0, down.shape[0])
        for tile in token_tiles(x.shape[0], tile_tokens):
            part = swiglu(x[tile], gate, up, down)
            if tile.start == 0:  # in the dtype autocast gives the MLP's output
                out = part.new_empty(x.shape[0], part.shape[1])
            out[tile] = part
        ctx.save_for_backward(x, gate, up, down)
        ctx.tile_tokens, ctx.autocast = tile_tokens, capture(x.device)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        x, *weights = ctx.saved_tensors
        grad_x = torch.zeros_like(x) if ctx.needs_input_grad[0] else None
        grad_weights = [torch.zeros_like(w) if ctx.needs_input_grad[2 + i] else None for i, w in enumerate(weights)]
        leaves = [w.detach().requires_grad_(needed is not None) for w, needed in zip(weights, grad_weights)]
        for tile in token_tiles(x.shape[0], ctx.tile_tokens):
            with torch.enable_grad(), replay(ctx.autocast):
                x_tile = x[tile].detach().requires_grad_(grad_x is not None)
                wanted = [t for t in (x_tile, *leaves) if t.requires_grad]
                grads = iter(torch.autograd.grad(swiglu(x_tile, *leaves), wanted, grad_out[tile]))
            if grad_x is not None:
                grad_x[tile] = next(grads)
            for accumulated in grad_weights:
                if accumulated is not None:
                    accumulated += next(grads)
        return grad_x, None, *grad_weights


def tiled_swiglu(mlp: SwiGLU, x: torch.Tensor, tile_tokens: int) -> torch.Tensor:
    """``mlp(x)`` for `x` `[n, dim]`, computed over tiles of `tile_tokens` tokens in forward and backward."""
    return _TiledSwiGLU.apply(x, tile_tokens, mlp.gate.weight, mlp.up.weight, mlp.down.weight)
