"""TiledMLP and the tiled head+loss equal the whole-shard computation, for any tile size, including empty shards."""
from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from longctx.model.layers import RMSNorm, SwiGLU
from longctx.model.loss import IGNORE
from longctx.model.tiled_loss import tiled_head_loss
from longctx.model.tiled_mlp import tiled_swiglu, token_tiles


def test_token_tiles_cover_every_row_once():
    assert token_tiles(10, 4) == [slice(0, 4), slice(4, 8), slice(8, 10)]
    assert token_tiles(0, 4) == []
    with pytest.raises(ValueError, match="tile_tokens=0 must be >= 1"):
        token_tiles(5, 0)


@pytest.mark.parametrize("tokens, tile", [(23, 1), (23, 5), (23, 23), (23, 100), (0, 4)])
def test_tiled_mlp_matches_the_whole_mlp_forward_and_backward(tokens, tile):
    torch.manual_seed(0)
    mlp = SwiGLU(12, 20).double()
    x = torch.randn(tokens, 12, dtype=torch.float64, requires_grad=True)
    grad = torch.randn(tokens, 12, dtype=torch.float64)
    # whole-shard reference written out, not through the module
    reference = F.linear(F.silu(x @ mlp.gate.weight.T) * (x @ mlp.up.weight.T), mlp.down.weight)
    want = torch.autograd.grad(reference, [x, *mlp.parameters()], grad)
    out = tiled_swiglu(mlp, x, tile)
    got = torch.autograd.grad(out, [x, *mlp.parameters()], grad)
    torch.testing.assert_close(out, reference, rtol=1e-12, atol=1e-12)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-12, atol=1e-12)


def _head(dim: int, vocab: int) -> tuple[RMSNorm, torch.nn.Linear]:
    norm, head = RMSNorm(dim, 1e-5).double(), torch.nn.Linear(dim, vocab, bias=False).double()
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
    return norm, head


@pytest.mark.parametrize("tile", [1, 3, 16, 64])
def test_tiled_head_loss_matches_the_whole_logits(tile):
    torch.manual_seed(0)
    hidden = torch.randn(17, 8, dtype=torch.float64, requires_grad=True)
    norm, head = _head(8, 11)
    targets = torch.randint(0, 11, (17,))
    targets[[0, 5, 16]] = IGNORE
    # the whole-shard reference written out, not through the modules
    normed = hidden / hidden.pow(2).mean(-1, keepdim=True).add(1e-5).sqrt() * norm.weight
    logits = normed @ head.weight.T
    rows = targets != IGNORE
    reference = -(logits.log_softmax(-1)[rows, targets[rows]]).sum() / 40
    want = torch.autograd.grad(reference, [hidden, norm.weight, head.weight])
    loss = tiled_head_loss(hidden, norm, head, targets, 40, tile)
    got = torch.autograd.grad(loss, [hidden, norm.weight, head.weight])
    torch.testing.assert_close(loss, reference, rtol=1e-12, atol=1e-12)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-12, atol=1e-12)


def test_tiled_head_loss_of_an_empty_shard_is_zero_with_zero_gradients():
    hidden = torch.zeros(0, 8, requires_grad=True)
    norm, head = RMSNorm(8, 1e-5), torch.nn.Linear(8, 11, bias=False)
    loss = tiled_head_loss(hidden, norm, head, torch.zeros(0, dtype=torch.int64), 5, 4)
    loss.backward()
    assert float(loss.detach()) == 0.0 and hidden.grad.shape == (0, 8)
    assert head.weight.grad.abs().sum() == 0 and norm.weight.grad.abs().sum() == 0
    with pytest.raises(ValueError, match="step_targets=0"):
        tiled_head_loss(hidden, norm, head, torch.zeros(0, dtype=torch.int64), 0, 4)
