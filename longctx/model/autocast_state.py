"""Replaying a forward's autocast state in a backward recomputation (checkpoints, TiledMLP, tiled loss).

Autocast is off during backward, so a recomputation must re-enter the
forward's state or it would compute (and allocate) in another precision than
the forward did: `capture` in the custom Function's forward, `replay` around
its recomputation in backward.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class AutocastState:
    device_type: str
    enabled: bool
    dtype: torch.dtype


def capture(device: torch.device) -> AutocastState:
    """The autocast state now active for `device`'s type."""
    kind = device.type
    return AutocastState(kind, torch.is_autocast_enabled(kind), torch.get_autocast_dtype(kind))


def replay(state: AutocastState) -> torch.autocast:
    """A context that re-enters `state` (also when it was off: then it turns autocast off)."""
    return torch.autocast(state.device_type, dtype=state.dtype, enabled=state.enabled)
