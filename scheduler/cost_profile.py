"""Cost profiles: a cost model and link constants measured on one machine, with how they were measured.

`longctx profile` (longctx.profiling) measures and writes one; `longctx plan
--cost-profile FILE` and `longctx train parallel.cost_profile=FILE` read it.
File format (YAML for ``.yaml``/``.yml``, else JSON), one mapping::

    format: longctx-cost-profile/1
    cost_model:   {CostModel field: value}        # any subset; the rest keep the defaults
    links:        {Cluster link field: value}     # measured link constants (subset of LINK_FIELDS)
    not_measured: {field: why}                    # constants left at their defaults, and why
    measurements: {...}                           # raw samples and fits, for the reader
    provenance:   {command, machine, versions, created_utc, ...}

`links` replace the matching fields of the `Cluster` being planned for
(`CostProfile.cluster`); fields it lacks (on one machine: everything across
nodes) keep the cluster's values. A flat mapping of `CostModel` fields (what
`CostModel.to_profile` writes) reads as a profile with only a cost model.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

from longctx.scheduler.cluster import Cluster, load_mapping
from longctx.scheduler.cost_model import CostModel
from longctx.scheduler.errors import SchedulerInputError

PROFILE_FORMAT = "longctx-cost-profile/1"
#: the `Cluster` fields a profile may measure
LINK_FIELDS = ("intra_node_p2p_gbps", "inter_node_p2p_gbps", "alltoall_intra_gbps", "alltoall_inter_gbps",
               "link_latency_us")
_SECTIONS = ("format", "cost_model", "links", "not_measured", "measurements", "provenance")


@dataclass(frozen=True)
class CostProfile:
    """A measured cost model, measured link constants, and the record of how they were measured."""

    cost_model: CostModel = field(default_factory=CostModel)
    #: measured `Cluster` link fields (names in LINK_FIELDS; GB/s, us, {size: GB/s} tables)
    links: dict = field(default_factory=dict, hash=False)
    #: constant name -> why it was not measured (it keeps its default)
    not_measured: dict = field(default_factory=dict, hash=False)
    #: raw samples and fits (free-form, for the reader)
    measurements: dict = field(default_factory=dict, hash=False)
    #: command, machine, versions, time
    provenance: dict = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.links) - set(LINK_FIELDS))
        if unknown:
            raise SchedulerInputError(f"CostProfile.links: unknown field(s) {unknown}; a profile measures {list(LINK_FIELDS)}")
        self.cluster(Cluster(num_ranks=1, ranks_per_node=1))  # validates the values with Cluster's own checks

    def cluster(self, base: Cluster) -> Cluster:
        """`base` with the measured link constants in place of its own."""
        return replace(base, **self.links)

    def model_mismatches(self, **shape: int) -> list[str]:
        """``"field: profiled X, given Y"`` for each CostModel `shape` field (num_layers=..., ...) that differs
        from the profiled model; none for a profile without provenance (hand-written numbers)."""
        if not self.provenance:
            return []
        return [f"{name}: profiled {getattr(self.cost_model, name)}, given {value}" for name, value in shape.items()
                if getattr(self.cost_model, name) != value]

    def to_dict(self) -> dict:
        return {"format": PROFILE_FORMAT, "cost_model": self.cost_model.to_dict(), "links": self.links,
                "not_measured": self.not_measured, "measurements": self.measurements, "provenance": self.provenance}

    def write(self, path: str | Path) -> None:
        """Write to `path` (YAML for .yaml/.yml, else JSON) via a temporary file and a rename."""
        path = Path(path)
        data = _plain(self.to_dict())
        if path.suffix in (".yaml", ".yml"):
            import yaml

            text = yaml.safe_dump(data, sort_keys=False)
        else:
            text = json.dumps(data, indent=2) + "\n"
        from longctx.scheduler.cli import write_atomically

        write_atomically(path, text)

    @classmethod
    def load(cls, path: str | Path) -> "CostProfile":
        """Read a full cost profile, or a flat mapping of CostModel fields; errors name the file and key."""
        data = load_mapping(path, "cost profile")
        where = f"cost profile {str(path)!r}"
        if "cost_model" not in data:
            return cls(cost_model=CostModel.from_dict(data, where))
        unknown = sorted(set(data) - set(_SECTIONS))
        if unknown:
            raise SchedulerInputError(f"{where}: unknown section(s) {unknown}; known: {list(_SECTIONS)}")
        if data.get("format", PROFILE_FORMAT) != PROFILE_FORMAT:
            raise SchedulerInputError(f"{where}: format {data['format']!r} is not {PROFILE_FORMAT!r}; "
                                      "re-run `longctx profile` with this version")
        sections = {}
        for name in ("cost_model", "links", "not_measured", "measurements", "provenance"):
            value = data.get(name) or {}
            if not isinstance(value, dict):
                raise SchedulerInputError(f"{where}: section {name!r} must be a mapping, got {type(value).__name__}")
            sections[name] = value
        try:
            return cls(cost_model=CostModel.from_dict(sections.pop("cost_model"), f"{where} cost_model"), **sections)
        except SchedulerInputError as err:
            raise SchedulerInputError(f"{where}: {err}") from None


def planning_inputs(profile_path: str | Path | None, cluster: Cluster,
                    default: CostModel | None = None) -> tuple[Cluster, CostModel]:
    """The cluster and cost model to plan with: `profile_path`'s (links applied to `cluster`) when
    given, else `cluster` and `default` (the built-in 7B/H100 model when None)."""
    if profile_path is None:
        return cluster, default if default is not None else CostModel()
    profile = CostProfile.load(profile_path)
    return profile.cluster(cluster), profile.cost_model


def _plain(value):
    """`value` with tuples as lists and numpy scalars as Python numbers (for YAML's safe dumper)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        return value.item()
    return value
