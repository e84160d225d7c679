"""checkpointing=tiled: the block's token-wise parts never see more than one tile, attention sees the whole shard,
and only the block input is saved. (Exactness of its gradients: tests/memory/test_exactness.py.)"""
from __future__ import annotations

import pytest
import torch

from longctx.model import LOCAL, next_token_targets
from longctx.model.decoder import Block
from longctx.runtime.activations import RankActivations
from longctx.runtime.config import MemoryConfig
from tests.memory.memory_cases import CONFIG, model_and_sequences, run_every_config_on_plan

LENGTHS = [9, 30, 1, 17]  # 57 tokens


def _run(config: MemoryConfig, monkeypatch) -> tuple[dict[str, list[int]], RankActivations]:
    rows: dict[str, list[int]] = {"attention_inputs": [], "after_attention": []}
    for name in rows:
        original = getattr(Block, name)

        def recording(self, x, *args, _name=name, _original=original):
            rows[_name].append(x.shape[0])
            return _original(self, x, *args)

        monkeypatch.setattr(Block, name, recording)
    model, sequences = model_and_sequences(LENGTHS)
    cu = [0, *torch.cumsum(torch.tensor(LENGTHS), 0).tolist()]
    positions = torch.cat([torch.arange(n) for n in LENGTHS])
    activations = RankActivations(config, model.parameters(), torch.device("cpu"))
    with activations.micro_batch() as memory:
        model.loss(torch.cat(sequences), positions, cu, next_token_targets(sequences), 50, LOCAL, memory).backward()
    return rows, activations


@pytest.mark.parametrize("tile", [1, 8, 57, 100])
def test_token_wise_parts_run_tile_by_tile_in_forward_recompute_and_backward(monkeypatch, tile):
    rows, _ = _run(MemoryConfig(checkpointing="tiled", offload="none", mlp_tile_tokens=tile), monkeypatch)
    tiles = -(-57 // tile)
    # forward: one pass; backward: q/k/v rebuilt, then after_attention and attention_inputs back-propagated
    assert rows["attention_inputs"] == [min(tile, 57 - i * tile) for i in range(tiles)] * (3 * CONFIG.n_layers)
    assert rows["after_attention"] == [min(tile, 57 - i * tile) for i in range(tiles)] * (2 * CONFIG.n_layers)


def test_a_tiled_block_saves_only_its_input(monkeypatch):
    _, activations = _run(MemoryConfig(checkpointing="tiled", offload="none", mlp_tile_tokens=8), monkeypatch)
    for layer in range(CONFIG.n_layers):
        assert activations.accounting.layers[layer].resident == 57 * CONFIG.dim * 4  # fp32 [n, dim]


#: shards of 0 and 1 tokens on ring, Ulysses and hybrid groups, a rank idle in a wave
TINY_SHARDS_PLAN = {
    "world_size": 4, "lengths": [2, 1, 3, 1, 5], "method": "hand-made",
    "waves": [
        {"groups": [{"ranks": [0, 1, 2], "kind": "ring", "ulysses_degree": 1, "sequences": [0]},
                    {"ranks": [3], "kind": "local", "ulysses_degree": 1, "sequences": [1]}]},
        {"groups": [{"ranks": [0, 1], "kind": "ulysses", "ulysses_degree": 2, "sequences": [3]}]},
        {"groups": [{"ranks": [0, 1, 2, 3], "kind": "hybrid", "ulysses_degree": 2, "sequences": [2, 4]}]},
    ],
}


def test_tiled_checkpoints_with_empty_and_one_token_shards_on_4_gloo_ranks(gloo_pool):
    for rank, errors in enumerate(gloo_pool(4).run(run_every_config_on_plan, TINY_SHARDS_PLAN, "tiled")):
        assert len(errors) == 6
        worst = max(errors.items(), key=lambda item: item[1])
        assert worst[1] <= 1e-6, (rank, worst)
