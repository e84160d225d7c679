"""The optimizer's part of a DCP checkpoint, for the replicated and the sharded optimizer.

Replicated (`ReplicatedAdamW`, or any `torch.optim.Optimizer`): the FQN-keyed
state of `torch.distributed.checkpoint.state_dict`. Sharded (`ShardedAdamW`):
every rank writes its own slices under ``shard<r>of<n>`` (DCP stores the
ranks' distinct keys side by side), so a resume must use the same sharding and
world size; `check_checkpoint_layout` says so before anything loads. The
model's parameters are replicated in both cases and written once.
"""
from __future__ import annotations

import os
import re
from typing import Any

import torch
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    get_model_state_dict, get_state_dict, set_model_state_dict, set_state_dict,
)

from longctx.runtime.optim import ReplicatedAdamW, StepOptimizer
from longctx.runtime.zero import ShardedAdamW

_SHARD_KEY = re.compile(r"^optimizer\.(shard\d+of\d+)\.")


def checkpoint_states(model: nn.Module, optimizer: StepOptimizer | torch.optim.Optimizer
                      ) -> tuple[dict[str, Any], dict[str, Any]]:
    """(model state, optimizer state) to hand to DCP; loading into them in place restores both."""
    if isinstance(optimizer, ShardedAdamW):
        return get_model_state_dict(model), optimizer.checkpoint_state()
    inner = optimizer.torch_optimizer if isinstance(optimizer, ReplicatedAdamW) else optimizer
    return get_state_dict(model, inner)


def apply_checkpoint_states(model: nn.Module, optimizer: StepOptimizer | torch.optim.Optimizer,
                            model_state: dict[str, Any], optimizer_state: dict[str, Any]) -> None:
    """After `dcp.load` filled the dicts of `checkpoint_states`: put them into the model and optimizer."""
    if isinstance(optimizer, ShardedAdamW):
        set_model_state_dict(model, model_state)
        optimizer.load_checkpoint_state(optimizer_state)
        return
    inner = optimizer.torch_optimizer if isinstance(optimizer, ReplicatedAdamW) else optimizer
    set_state_dict(model, inner, model_state_dict=model_state, optim_state_dict=optimizer_state)


def check_checkpoint_layout(path: str | os.PathLike, optimizer: StepOptimizer | torch.optim.Optimizer) -> None:
    """ValueError when the checkpoint at `path` holds optimizer states sharded differently from `optimizer`."""
    keys = dcp.FileSystemReader(str(path)).read_metadata().state_dict_metadata
    saved = sorted({m.group(1) for m in map(_SHARD_KEY.match, keys) if m})
    wanted = optimizer.checkpoint_key if isinstance(optimizer, ShardedAdamW) else None
    if wanted is None and saved:
        raise ValueError(f"checkpoint {path} holds sharded optimizer states ({saved[0]}, ...); this run keeps them "
                         "replicated: resume with the memory.optimizer_sharding/optimizer_offload of the saved run")
    if wanted is not None and wanted not in saved:
        found = ", ".join(saved[:4]) or "replicated states"
        raise ValueError(f"checkpoint {path} holds optimizer states as {found}; this rank needs {wanted} "
                         f"(memory.optimizer_sharding={optimizer.sharding!r}, optimizer_offload={optimizer.offload}): "
                         "resume with the saved run's world size and memory.optimizer_* settings")
