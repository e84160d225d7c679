"""Option tables: time and work of sequences on candidate group shapes.

`OptionTable.build(lengths, shapes, ...)` evaluates every (shape, sequence)
pair once: ``time_ms[k, j]`` is sequence j alone on shape k (inf where it does
not fit in memory) and ``work[k, j] = size_k * time_ms[k, j]`` (rank-ms).
`choose(limit_ms)` picks, per sequence, the least-work shape whose time is at
most ``limit_ms`` (the fastest shape when none is), ties to the smaller shape.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from longctx.scheduler.cluster import Cluster
from longctx.scheduler.cost_model import CostModel, GroupShape


@dataclass(frozen=True)
class OptionTable:
    shapes: list[GroupShape]
    time_ms: np.ndarray  #: [shapes, sequences] ms, inf where the sequence does not fit
    work: np.ndarray  #: [shapes, sequences] rank-ms

    @classmethod
    def build(cls, lengths, shapes: list[GroupShape], cluster: Cluster, cost_model: CostModel) -> "OptionTable":
        s = np.asarray(lengths, dtype=np.float64)
        cap = cost_model.max_tokens_per_rank(cluster)
        time = np.empty((len(shapes), len(s)))
        for k, shape in enumerate(shapes):
            row = cost_model.time_ms(s, shape, cluster)
            time[k] = np.where(s <= cap * shape.size, row, np.inf)
        sizes = np.array([shape.size for shape in shapes], dtype=np.float64)[:, None]
        return cls(list(shapes), time, time * sizes)

    @property
    def sizes(self) -> np.ndarray:
        """[shapes] group size of each shape (ranks)."""
        return np.array([shape.size for shape in self.shapes], dtype=np.int64)

    def fastest_ms(self) -> np.ndarray:
        """[sequences] best time over all shapes, ms."""
        return self.time_ms.min(axis=0)

    def choose(self, limit_ms: float) -> np.ndarray:
        """[sequences] index of the least-work shape with time <= limit (else the fastest)."""
        within = np.where(self.time_ms <= limit_ms, self.work, np.inf)
        best = within.argmin(axis=0)
        none_within = ~np.isfinite(within.min(axis=0))
        if none_within.any():
            best[none_within] = self.time_ms[:, none_within].argmin(axis=0)
        return best
