"""What the decoder does to save activation memory in one forward: `ActivationMemory`.

The runtime builds one from `memory.*` (`longctx.runtime.config.MemoryConfig`);
the default saves nothing (every option off: the plain decoder).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, ContextManager

from torch import nn

#: layer keys besides the block indices 0..n_layers-1 that `ActivationMemory.scope` is called with: the
#: embedding, the head (final norm + output head; + the loss when tiled) and the untiled loss (log-softmax)
EMBEDDING, HEAD, LOSS = "embedding", "head", "loss"

CHECKPOINTING = ("none", "full", "selective", "tiled")


def _no_scope(layer: int | str) -> ContextManager:
    return contextlib.nullcontext()


def resident_weights(module: nn.Module) -> ContextManager:
    return contextlib.nullcontext()


@dataclass(frozen=True)
class ActivationMemory:
    """Decoder options. Units: tokens.

    checkpointing: "none" | "full" (a block keeps only its input; recomputed in backward) |
    "selective" (a block keeps its input, its attention output and log-sum-exp; the rest is recomputed) |
    "tiled" (like full, and the block's token-wise parts run over tiles of `mlp_tile_tokens` tokens in
    forward, recompute and backward; only attention's q/k/v/output and their gradients are whole-shard).
    mlp_tile_tokens / loss_tile_tokens: TiledMLP and tiled head+loss tile sizes (None: whole shard).
    scope: called with the block index, `EMBEDDING`, `HEAD` or `LOSS`; the decoder runs that part of the
    forward inside the returned context (the runtime's saved-tensor hooks: offload, accounting).
    weights: called with a module (a block, the embedding, the head) around every use of its weights
    (forward, recompute, backward); the returned context makes them usable on the device (the runtime's
    parameter offload materialises them from host memory and releases them after; default: nothing).
    """

    checkpointing: str = "none"
    mlp_tile_tokens: int | None = None
    loss_tile_tokens: int | None = None
    scope: Callable[[int | str], ContextManager] = _no_scope
    weights: Callable[[nn.Module], ContextManager] = resident_weights

    def __post_init__(self) -> None:
        if self.checkpointing not in CHECKPOINTING:
            raise ValueError(f"ActivationMemory.checkpointing={self.checkpointing!r}; choose one of {CHECKPOINTING}")
        for name in ("mlp_tile_tokens", "loss_tile_tokens"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"ActivationMemory.{name}={value!r} must be None or an integer >= 1")
        if self.checkpointing == "tiled" and self.mlp_tile_tokens is None:
            raise ValueError("ActivationMemory.checkpointing='tiled' with mlp_tile_tokens=None: tiled recompute "
                             "needs a tile size; set mlp_tile_tokens")


#: every option off
PLAIN = ActivationMemory()
