"""The activation side of `memory.*` on one rank: checkpoints, tiles, offload and accounting per micro-batch.

`RankActivations(config, model, device)` is built once per run; every
micro-batch runs inside ``with activations.micro_batch() as memory:`` where
`memory` is the `ActivationMemory` the decoder takes (`Decoder.loss`), its
scopes being this rank's `SavedTensorHooks` (`longctx.runtime.offload`). The
accounting (`longctx.runtime.memory_accounting.SavedTensorAccounting`) sums
over the micro-batches since its last `reset` (the trainer resets it per step).
"""
from __future__ import annotations

import contextlib
from typing import Iterable, Iterator

import torch

from longctx.model.activation_memory import ActivationMemory
from longctx.runtime.config import MemoryConfig
from longctx.runtime.memory_accounting import SavedTensorAccounting
from longctx.runtime.offload import SavedTensorHooks
from longctx.runtime.param_offload import ParamResidency


class RankActivations:
    """`memory.checkpointing/offload/offload_layers_in_flight/mlp_tile_tokens/loss_tile_tokens` on one rank."""

    def __init__(self, config: MemoryConfig, parameters: Iterable[torch.Tensor], device: torch.device,
                 weights: ParamResidency | None = None) -> None:
        """`weights`: the parameter offload (``memory.param_offload``) whose `weights` context the decoder
        wraps around every use of a module's weights; None: all weights stay resident."""
        self.config = config
        self.weights = weights
        self.accounting = SavedTensorAccounting()
        self.hooks = SavedTensorHooks(config.offload, config.checkpointing, device, parameters,
                                      config.offload_layers_in_flight, self.accounting)
        offload = {} if weights is None else {"weights": weights.weights}
        self.memory = ActivationMemory(config.checkpointing, config.mlp_tile_tokens, config.loss_tile_tokens,
                                       self.hooks.scope, **offload)

    @contextlib.contextmanager
    def micro_batch(self) -> Iterator[ActivationMemory]:
        """Run one micro-batch's forward and backward inside this context."""
        weights = self.weights.micro_batch() if self.weights is not None else contextlib.nullcontext()
        with self.hooks.micro_batch(), weights:
            yield self.memory
