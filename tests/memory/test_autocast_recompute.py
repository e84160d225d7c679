"""Recomputation in backward (checkpoints, TiledMLP, tiled loss) re-enters the forward's autocast state."""
from __future__ import annotations

import torch

from longctx.model import LOCAL, next_token_targets
from longctx.model.autocast_state import capture, replay
from longctx.model.layers import SwiGLU
from longctx.model.tiled_mlp import tiled_swiglu
from longctx.runtime.activations import RankActivations
from longctx.runtime.config import MemoryConfig
from tests.memory.memory_cases import model_and_sequences, relative_error

CPU = torch.device("cpu")


def test_capture_and_replay_restore_the_forward_state_in_backward():
    with torch.autocast("cpu", dtype=torch.bfloat16):
        state = capture(CPU)
    assert state.enabled and state.dtype == torch.bfloat16
    with replay(state):
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
    with torch.autocast("cpu", dtype=torch.bfloat16), replay(capture(CPU)):
        pass
    with replay(capture(CPU)):  # captured outside autocast: replaying it turns autocast off
        assert not torch.is_autocast_enabled("cpu")


def test_tiled_mlp_under_autocast_recomputes_in_bf16_like_the_plain_mlp():
    torch.manual_seed(0)
    mlp = SwiGLU(16, 32)
    x = torch.randn(50, 16, requires_grad=True)
    grad = torch.randn(50, 16).bfloat16()

    def gradients(tile):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = mlp(x) if tile is None else tiled_swiglu(mlp, x, tile)
        assert out.dtype == torch.bfloat16
        return torch.autograd.grad(out, [x, *mlp.parameters()], grad)

    plain = gradients(None)
    for got, want in zip(gradients(100), plain):  # one tile: the same bf16 operations, bit for bit
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    for got, want in zip(gradients(7), plain):  # 8 tiles: weight gradients summed per tile, bf16 rounding
        assert float((got - want).abs().max() / want.abs().max()) < 2e-2


def test_checkpointed_and_tiled_bf16_steps_match_the_plain_bf16_step_within_bf16_rounding():
    lengths = [37, 64, 5]
    model, sequences = model_and_sequences(lengths)
    cu = [0, *torch.cumsum(torch.tensor(lengths), 0).tolist()]
    positions = torch.cat([torch.arange(n) for n in lengths])
    targets = next_token_targets(sequences)

    def gradients(config):
        model.zero_grad(set_to_none=True)
        with RankActivations(config, model.parameters(), CPU).micro_batch() as memory:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = model.loss(torch.cat(sequences), positions, cu, targets, 100, LOCAL, memory)
            loss.backward()
        return {name: p.grad.clone() for name, p in model.named_parameters()}

    plain = gradients(MemoryConfig(checkpointing="none", offload="none", mlp_tile_tokens=None, loss_tile_tokens=None))
    for checkpointing in ("full", "selective", "tiled"):
        config = MemoryConfig(checkpointing=checkpointing, mlp_tile_tokens=16, loss_tile_tokens=16)
        assert relative_error(gradients(config), plain) < 2e-2, checkpointing
