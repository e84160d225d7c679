"""Shared pieces of the memory tests: every memory.* combination, a reference step, gradient errors.

The reference is the plain decoder (every option off) run on the whole batch in
one process: ``step_loss(model(...))``; it shares nothing with the tested path
beyond the model definition.
"""
from __future__ import annotations

import itertools

import torch
import torch.distributed as dist

from longctx.model import LOCAL, Decoder, ModelConfig, next_token_targets, step_loss
from longctx.runtime.activations import RankActivations
from longctx.runtime.config import MemoryConfig
from longctx.runtime.grad_sync import all_reduce_gradients
from longctx.runtime.process_groups import ProcessGroupCache
from longctx.runtime.step import run_plan
from longctx.scheduler import Plan

#: tiny GQA model (4 query heads, 2 kv heads) with 3 layers so that layers in flight < layers
CONFIG = ModelConfig(n_layers=3)
#: tile sizes that do not divide the shards (one-token tiles: tests/memory/test_tiles.py)
TILES = (None, 7)
LOSS_TILES = (None, 50)


def all_memory_configs() -> list[MemoryConfig]:
    """Every valid activation-side combination (offload=checkpoints needs checkpoints, tiled needs a tile)."""
    configs = []
    for checkpointing, offload, mlp_tile, loss_tile in itertools.product(
            ("none", "full", "selective", "tiled"), ("none", "checkpoints", "all"), TILES, LOSS_TILES):
        if (offload == "checkpoints" and checkpointing == "none") or (checkpointing == "tiled" and mlp_tile is None):
            continue
        configs.append(MemoryConfig(checkpointing=checkpointing, offload=offload, offload_layers_in_flight=1,
                                    mlp_tile_tokens=mlp_tile, loss_tile_tokens=loss_tile))
    return configs


def label(config: MemoryConfig) -> str:
    return (f"ckpt={config.checkpointing},offload={config.offload},mlp_tile={config.mlp_tile_tokens},"
            f"loss_tile={config.loss_tile_tokens}")


def model_and_sequences(lengths: list[int]) -> tuple[Decoder, list[torch.Tensor]]:
    torch.manual_seed(0)
    model = Decoder(CONFIG)
    generator = torch.Generator().manual_seed(1)
    return model, [torch.randint(0, CONFIG.vocab_size, (n,), generator=generator) for n in lengths]


def reference_gradients(model: Decoder, sequences: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    """Gradients of the whole step on one process with every memory option off."""
    model.zero_grad(set_to_none=True)
    lengths = [s.numel() for s in sequences]
    cu = [0, *torch.cumsum(torch.tensor(lengths), 0).tolist()]
    positions = torch.cat([torch.arange(n) for n in lengths])
    targets = next_token_targets(sequences)
    step_loss(model(torch.cat(sequences), positions, cu, LOCAL), targets, int((targets >= 0).sum())).backward()
    return {name: p.grad.clone() for name, p in model.named_parameters()}


def relative_error(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> float:
    """Largest over parameters of max |got - want| / max |want|."""
    return max(float((got[name] - want[name]).abs().max() / want[name].abs().max()) for name in want)


def run_every_config_on_plan(plan_dict: dict, checkpointing: str | None = None) -> dict[str, float]:
    """On every rank: run `plan_dict` with each memory config (only those of `checkpointing` when given),
    all-reduce, compare with the reference."""
    plan = Plan.from_dict(plan_dict).validate()
    model, sequences = model_and_sequences(list(plan.lengths))
    want = reference_gradients(model, sequences)
    groups = ProcessGroupCache()
    groups.prepare(plan)
    errors = {}
    for config in all_memory_configs():
        if checkpointing is not None and config.checkpointing != checkpointing:
            continue
        model.zero_grad(set_to_none=True)
        activations = RankActivations(config, model.parameters(), torch.device("cpu"))
        run_plan(model, plan, sequences, dist.get_rank(), groups, activations=activations)
        all_reduce_gradients(model.parameters())
        errors[label(config)] = relative_error({n: p.grad for n, p in model.named_parameters()}, want)
    return errors
