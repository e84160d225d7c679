"""memory.*: gradients with every checkpointing / offload / tile combination equal the plain step's (fp32, 1e-6)."""
from __future__ import annotations

import pytest
import torch

from longctx.attention import hybrid
from longctx.model import LOCAL, next_token_targets
from longctx.runtime.activations import RankActivations
from longctx.runtime.config import MemoryConfig
from tests.memory.memory_cases import (
    all_memory_configs, label, model_and_sequences, reference_gradients, relative_error, run_every_config_on_plan,
)
from tests.runtime.test_plan_execution import SWITCHING_PLAN

LENGTHS = [37, 64, 5, 120, 1]
TOLERANCE = 1e-6


def _one_process_gradients(model, sequences, config: MemoryConfig) -> dict[str, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    lengths = [s.numel() for s in sequences]
    cu = [0, *torch.cumsum(torch.tensor(lengths), 0).tolist()]
    positions = torch.cat([torch.arange(n) for n in lengths])
    targets = next_token_targets(sequences)
    activations = RankActivations(config, model.parameters(), torch.device("cpu"))
    with activations.micro_batch() as memory:
        model.loss(torch.cat(sequences), positions, cu, targets, int((targets >= 0).sum()), LOCAL, memory).backward()
    return {name: p.grad.clone() for name, p in model.named_parameters()}


def test_every_combination_gives_the_plain_gradients_on_one_process():
    model, sequences = model_and_sequences(LENGTHS)
    want = reference_gradients(model, sequences)
    errors = {label(c): relative_error(_one_process_gradients(model, sequences, c), want)
              for c in all_memory_configs()}
    assert len(errors) == 38  # 32 + tiled: 3 offloads x 2 loss tiles
    worst = max(errors.items(), key=lambda item: item[1])
    assert worst[1] <= TOLERANCE, worst


def test_every_combination_gives_the_single_process_gradients_on_4_gloo_ranks_with_a_switching_plan(gloo_pool):
    for rank, errors in enumerate(gloo_pool(4).run(run_every_config_on_plan, SWITCHING_PLAN)):
        assert len(errors) == 38  # 32 + tiled: 3 offloads x 2 loss tiles
        worst = max(errors.items(), key=lambda item: item[1])
        assert worst[1] <= TOLERANCE, (rank, worst)


def test_a_broken_replay_is_caught():
    """The comparison can fail: a selective checkpoint replaying a wrong attention output is off."""
    model, sequences = model_and_sequences(LENGTHS)
    want = reference_gradients(model, sequences)
    original = hybrid.HybridAttention.backward

    def wrong_backward(ctx, dout):
        return original(ctx, dout * 1.001)

    hybrid.HybridAttention.backward = staticmethod(wrong_backward)
    try:
        got = _one_process_gradients(model, sequences, MemoryConfig(checkpointing="selective", offload="all"))
    finally:
        hybrid.HybridAttention.backward = original
    assert relative_error(got, want) > 1e-4


@pytest.mark.parametrize("checkpointing, forwards_in_backward",
                         [("full", 3), ("selective", 0), ("none", 0), ("tiled", 3)])
def test_selective_checkpoints_replay_attention_and_full_ones_recompute_it(monkeypatch, checkpointing,
                                                                          forwards_in_backward):
    model, sequences = model_and_sequences(LENGTHS)
    calls = []
    ring_forward = hybrid.ring_forward
    monkeypatch.setattr(hybrid, "ring_forward", lambda *a, **k: calls.append(1) or ring_forward(*a, **k))
    lengths = [s.numel() for s in sequences]
    cu = [0, *torch.cumsum(torch.tensor(lengths), 0).tolist()]
    positions = torch.cat([torch.arange(n) for n in lengths])
    targets = next_token_targets(sequences)
    config = MemoryConfig(checkpointing=checkpointing, offload="none", mlp_tile_tokens=7)
    with RankActivations(config, model.parameters(), torch.device("cpu")).micro_batch() as memory:
        loss = model.loss(torch.cat(sequences), positions, cu, targets, 100, LOCAL, memory)
        assert len(calls) == 3  # one attention forward per layer
        loss.backward()
    assert len(calls) == 3 + forwards_in_backward
