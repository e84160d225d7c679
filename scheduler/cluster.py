"""The cluster a step is planned for: ranks, nodes, memory and link bandwidths.

A `Cluster` plays the role torchtitan's ParallelDims plays for a static mesh:
one validated object whose errors name the offending numbers. Units: memory in
GB (1e9 bytes), bandwidths in GB/s (1e9 bytes per second, one direction, per
rank), latency in microseconds.

Defaults describe H100-class nodes of 8 GPUs (80 GB each) on NVLink inside a
node and 400 Gb/s InfiniBand per GPU between nodes. The all-to-all bandwidths
are FlexSP's measured values (GB/s by group size 2, 4, 8 inside one node;
16, 32, 64 ranks = 2, 4, 8 nodes): 119.5, 104.1, 96.5 | 10.3, 5.94, 4.87. They
collapse once an all-to-all leaves the node, which is why Ulysses groups that
span nodes are expensive in the cost model. Past the largest measured number
of nodes the last value is kept (optimistic for Ulysses, so fair to FlexSP).

Files: `Cluster.from_file(path)` reads YAML (``.yaml``/``.yml``) or JSON with
the field names below; integer keys of the bandwidth tables may be strings.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from longctx.scheduler.errors import SchedulerInputError
from longctx.scheduler.input_files import read_text_file


def _default_alltoall_intra() -> dict[int, float]:
    return {2: 119.5, 4: 104.1, 8: 96.5}


def _default_alltoall_inter() -> dict[int, float]:
    return {2: 10.3, 4: 5.94, 8: 4.87}


def _table_lookup(table: dict[int, float], key: int) -> float:
    """Value of the largest table key <= `key` (the smallest key's value below it)."""
    eligible = [k for k in table if k <= key]
    return table[max(eligible)] if eligible else table[min(table)]


@dataclass(frozen=True)
class Cluster:
    """A homogeneous GPU cluster.

    Fields:
        num_ranks: total ranks (GPUs); a multiple of `ranks_per_node`.
        ranks_per_node: GPUs per node (the NVLink domain).
        memory_per_rank_gb: device memory per rank, GB.
        intra_node_p2p_gbps: point-to-point bandwidth between ranks of one node, GB/s.
        inter_node_p2p_gbps: point-to-point bandwidth between ranks of different nodes, GB/s.
        alltoall_intra_gbps: all-to-all bandwidth per rank inside one node, by group size.
        alltoall_inter_gbps: all-to-all bandwidth per rank across nodes, by number of nodes spanned.
        link_latency_us: latency of one message, microseconds.
    """

    num_ranks: int
    ranks_per_node: int = 8
    memory_per_rank_gb: float = 80.0
    intra_node_p2p_gbps: float = 150.0
    inter_node_p2p_gbps: float = 40.0
    alltoall_intra_gbps: dict[int, float] = field(default_factory=_default_alltoall_intra)
    alltoall_inter_gbps: dict[int, float] = field(default_factory=_default_alltoall_inter)
    link_latency_us: float = 10.0

    def __post_init__(self) -> None:
        for name in ("num_ranks", "ranks_per_node"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise SchedulerInputError(f"Cluster.{name}={value!r}: must be a positive integer")
        if self.num_ranks % self.ranks_per_node:
            raise SchedulerInputError(
                f"Cluster.num_ranks={self.num_ranks} is not a multiple of ranks_per_node="
                f"{self.ranks_per_node}; use whole nodes, e.g. num_ranks="
                f"{max(1, round(self.num_ranks / self.ranks_per_node)) * self.ranks_per_node}"
            )
        for name in ("memory_per_rank_gb", "intra_node_p2p_gbps", "inter_node_p2p_gbps"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
                raise SchedulerInputError(f"Cluster.{name}={value!r}: must be a positive number")
        if not isinstance(self.link_latency_us, (int, float)) or self.link_latency_us < 0:
            raise SchedulerInputError(f"Cluster.link_latency_us={self.link_latency_us!r}: must be >= 0")
        for name in ("alltoall_intra_gbps", "alltoall_inter_gbps"):
            table = getattr(self, name)
            if not isinstance(table, dict) or not table:
                raise SchedulerInputError(f"Cluster.{name}={table!r}: must be a non-empty {{size: GB/s}} table")
            clean = {}
            for key, value in table.items():
                try:
                    size = int(key)
                except (TypeError, ValueError):
                    raise SchedulerInputError(f"Cluster.{name} key {key!r}: must be an integer group size") from None
                if size < 2 or not isinstance(value, (int, float)) or not value > 0:
                    raise SchedulerInputError(
                        f"Cluster.{name}[{key!r}]={value!r}: sizes must be >= 2 and bandwidths > 0 GB/s"
                    )
                clean[size] = float(value)
            object.__setattr__(self, name, dict(sorted(clean.items())))

    @property
    def num_nodes(self) -> int:
        return self.num_ranks // self.ranks_per_node

    def nodes_spanned(self, group_size: int) -> int:
        """Nodes a group of `group_size` ranks occupies (groups never straddle a node needlessly)."""
        return max(1, -(-group_size // self.ranks_per_node))

    def p2p_gbps(self, group_size: int) -> float:
        """Bandwidth of the slowest ring hop of a group of `group_size` ranks."""
        return self.intra_node_p2p_gbps if group_size <= self.ranks_per_node else self.inter_node_p2p_gbps

    def alltoall_gbps(self, group_size: int) -> float:
        """Per-rank all-to-all bandwidth of a group of `group_size` ranks."""
        if group_size <= self.ranks_per_node:
            return _table_lookup(self.alltoall_intra_gbps, group_size)
        return _table_lookup(self.alltoall_inter_gbps, self.nodes_spanned(group_size))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Cluster":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise SchedulerInputError(f"Cluster: unknown field(s) {unknown}; known fields are {sorted(known)}")
        return cls(**data)

    @classmethod
    def from_file(cls, path: str | Path) -> "Cluster":
        """Read a cluster from YAML (.yaml/.yml) or JSON."""
        return cls.from_dict(load_mapping(path, "cluster"))


def load_mapping(path: str | Path, what: str) -> dict:
    """Read a YAML or JSON file holding one mapping; errors name the file."""
    path = Path(path)
    text = read_text_file(path, f"{what} file", "a YAML or JSON file")
    if path.suffix in (".yaml", ".yml"):
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise SchedulerInputError(f"{what} file {str(path)!r} is not valid YAML: {' '.join(str(err).split())}") from None
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise SchedulerInputError(f"{what} file {str(path)!r} is not valid JSON: {err}") from None
    if not isinstance(data, dict):
        raise SchedulerInputError(f"{what} file {str(path)!r} must hold a mapping, got {type(data).__name__}")
    return data
