"""What the decoder does to save activation memory in one forward: `ActivationMemory`.

The runtime builds one from `memory.*` (`longctx.runtime.config.MemoryConfig`);
the default saves nothing (every option off: the plain decoder).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, ContextManager

#: layer keys besides the block indices 0..n_layers-1 that `ActivationMemory.scope` is called with: the
#: embedding, the head (final norm + output head; + the loss when tiled) and the untiled loss (log-softmax)
EMBEDDING, HEAD, LOSS = "embedding", "head", "loss"

CHECKPOINTING = ("none", "full", "selective")


def _no_scope(layer: int | str) -> ContextManager:
    return contextlib.nullcontext()


@dataclass(frozen=True)
class ActivationMemory:
    """Decoder options. Units: tokens.

    checkpointing: "none" | "full" (a block keeps only its input; recomputed in backward) |
    "selective" (a block keeps its input, its attention output and log-sum-exp; the rest is recomputed).
    mlp_tile_tokens / loss_tile_tokens: TiledMLP and tiled head+loss tile sizes (None: whole shard).
    scope: called with the block index, `EMBEDDING`, `HEAD` or `LOSS`; the decoder runs that part of the
    forward inside the returned context (the runtime's saved-tensor hooks: offload, accounting).
    """

    checkpointing: str = "none"
    mlp_tile_tokens: int | None = None
    loss_tile_tokens: int | None = None
    scope: Callable[[int | str], ContextManager] = _no_scope

    def __post_init__(self) -> None:
        if self.checkpointing not in CHECKPOINTING:
            raise ValueError(f"ActivationMemory.checkpointing={self.checkpointing!r}; choose one of {CHECKPOINTING}")
        for name in ("mlp_tile_tokens", "loss_tile_tokens"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"ActivationMemory.{name}={value!r} must be None or an integer >= 1")


#: every option off
PLAIN = ActivationMemory()
