"""Saved-tensor hooks: what each mode keeps, offloads and brings back, in which order, counted exactly."""
from __future__ import annotations

import pytest
import torch

from longctx.model import LOCAL, next_token_targets
from longctx.runtime.activations import RankActivations
from longctx.runtime.config import MemoryConfig
from longctx.runtime.memory_accounting import SavedTensorAccounting
from longctx.runtime.offload import SavedTensorHooks
from tests.memory.memory_cases import CONFIG, model_and_sequences

LENGTHS = [40, 90, 3]
TOKENS = sum(LENGTHS)
FP32 = 4


def _step(config: MemoryConfig, passes: int = 1) -> RankActivations:
    """Forward + backward of the whole batch `passes` times under `config`; returns the rank's activations."""
    model, sequences = model_and_sequences(LENGTHS)
    cu = [0, *torch.cumsum(torch.tensor(LENGTHS), 0).tolist()]
    positions = torch.cat([torch.arange(n) for n in LENGTHS])
    targets = next_token_targets(sequences)
    activations = RankActivations(config, model.parameters(), torch.device("cpu"))
    for _ in range(passes):
        with activations.micro_batch() as memory:
            model.loss(torch.cat(sequences), positions, cu, targets, TOKENS, LOCAL, memory).backward()
    return activations


def test_full_checkpoints_offloaded_keep_exactly_each_layers_input_in_the_host_store():
    activations = _step(MemoryConfig(checkpointing="full", offload="checkpoints", mlp_tile_tokens=None,
                                     loss_tile_tokens=None))
    blocks = activations.accounting.block_bytes()
    assert sorted(blocks) == list(range(CONFIG.n_layers))
    assert all(b.resident == 0 and b.offloaded == TOKENS * CONFIG.dim * FP32 for b in blocks.values())
    assert activations.hooks.unpack_order == [2, 1, 0]  # backward order: last layer first
    assert activations.accounting.prefetched_bytes == activations.accounting.offloaded_bytes
    assert activations.accounting.offloaded_bytes == CONFIG.n_layers * TOKENS * CONFIG.dim * FP32


def test_selective_checkpoints_add_the_attention_output_and_its_lse():
    activations = _step(MemoryConfig(checkpointing="selective", offload="none"))
    per_layer = TOKENS * CONFIG.dim * FP32 * 2 + TOKENS * CONFIG.n_heads * FP32  # input, output, lse
    assert all(b.resident == per_layer and b.offloaded == 0 for b in activations.accounting.block_bytes().values())


def test_offload_all_keeps_nothing_resident_and_brings_everything_back_in_backward_order():
    activations = _step(MemoryConfig(checkpointing="none", offload="all", offload_layers_in_flight=1))
    accounting = activations.accounting
    assert accounting.peak_resident_bytes == 0 and accounting.offloaded_bytes > 0
    assert accounting.prefetched_bytes == accounting.offloaded_bytes
    assert activations.hooks.unpack_order == ["head", 2, 1, 0, "embedding"]
    assert activations.hooks.most_layers_in_flight == 1


@pytest.mark.parametrize("in_flight", [1, 2, 5])
def test_copy_outs_in_flight_stay_within_the_bound(in_flight):
    activations = _step(MemoryConfig(checkpointing="full", offload="all", offload_layers_in_flight=in_flight))
    assert activations.hooks.most_layers_in_flight == min(in_flight, CONFIG.n_layers + 2)


def test_without_checkpoints_layers_keep_more_and_tiles_shrink_the_mlp_and_head():
    plain = _step(MemoryConfig(checkpointing="none", offload="none", mlp_tile_tokens=None, loss_tile_tokens=None))
    tiled = _step(MemoryConfig(checkpointing="none", offload="none", mlp_tile_tokens=16, loss_tile_tokens=16))
    full = _step(MemoryConfig(checkpointing="full", offload="none"))
    plain_block = plain.accounting.layers[0].resident
    assert full.accounting.layers[0].resident == TOKENS * CONFIG.dim * FP32 < tiled.accounting.layers[0].resident
    assert tiled.accounting.layers[0].resident < plain_block - 2 * TOKENS * CONFIG.ffn_dim * FP32
    # the tiled head keeps the normed hidden state and the targets, never [tokens, vocab] logits
    assert tiled.accounting.layers["head"].resident < TOKENS * CONFIG.vocab_size * FP32
    assert "loss" not in tiled.accounting.layers
    assert plain.accounting.layers["loss"].resident >= TOKENS * CONFIG.vocab_size * FP32


def test_passes_restart_the_layers_and_keep_the_peak_and_traffic():
    one = _step(MemoryConfig(checkpointing="full", offload="checkpoints"))
    two = _step(MemoryConfig(checkpointing="full", offload="checkpoints"), passes=2)
    assert two.accounting.passes == 2 and two.accounting.peak_resident_bytes == one.accounting.peak_resident_bytes
    assert two.accounting.offloaded_bytes == 2 * one.accounting.offloaded_bytes
    assert two.accounting.pass_offloaded_bytes() == one.accounting.pass_offloaded_bytes()


def test_parameters_saved_for_backward_are_not_counted():
    layer = torch.nn.Linear(8, 8, bias=False)
    hooks = SavedTensorHooks("all", "none", torch.device("cpu"), layer.parameters())
    x = torch.randn(5, 8, requires_grad=True)
    with hooks.micro_batch():
        with hooks.scope(0):
            y = torch.tanh(layer(x))  # linear saves x and (a view of) the weight; tanh saves its output
        y.sum().backward()
    assert hooks.accounting.offloaded_bytes == 2 * 5 * 8 * FP32
    assert isinstance(hooks.accounting, SavedTensorAccounting)


def test_bad_hook_settings_are_refused():
    with pytest.raises(ValueError, match="mode='checkpoints' needs layer checkpoints"):
        SavedTensorHooks("checkpoints", "none", torch.device("cpu"), [])
    with pytest.raises(ValueError, match="layers_in_flight=0 must be >= 1"):
        SavedTensorHooks("all", "none", torch.device("cpu"), [], layers_in_flight=0)
