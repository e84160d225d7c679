"""Where and how attention runs for one packed batch (`AttentionLayout`) and the plan it builds (`attention_plan`)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch

from longctx.attention import HybridPlan, plan_attention


@dataclass(frozen=True)
class AttentionLayout:
    """How attention runs for one packed batch: the group's kind, its process group, the backend.

    kind: "local" | "ring" | "ulysses" | "hybrid"; group: the process group of
    the ranks sharing the batch (None for "local"); ulysses_degree: for
    "hybrid" (None lets attention choose); backend: a name from
    `longctx.attention.backends` or "auto".
    """

    kind: str = "local"
    group: Any = None
    ulysses_degree: int | None = None
    backend: str = "auto"


LOCAL = AttentionLayout()


def attention_plan(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu_seqlens: torch.Tensor | Sequence[int],
                   layout: AttentionLayout) -> HybridPlan:
    """The attention plan of one forward (`plan_attention` with the layout's kind, group and backend)."""
    return plan_attention(q, k, v, cu_seqlens, kind=layout.kind, group=layout.group,
                          ulysses_degree=layout.ulysses_degree, backend=layout.backend)
