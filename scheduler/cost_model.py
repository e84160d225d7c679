"""Cost model: time and memory of one sequence on one group of ranks.

Default profile: a 7B Llama-like decoder (32 layers, hidden 4096, 32 heads of
128, multi-head KV, bf16) trained with full activation recompute. The compute
constants are FlexSP's profiled GPT-7B numbers (forward + backward, one GPU,
causal): attention ``alpha1 = 5.128e-6 ms/token^2`` and linear layers
``alpha2 = 0.184 ms/token``. FlexSP's per-step overhead (629 ms) is the same
for every plan of a step and is left out of step times.

Time of a sequence of ``s`` tokens on a group of ``d`` ranks (ms):

- local (d = 1):  ``alpha2*s + alpha1*s^2``
- ring (zigzag, d ranks): linear ``alpha2*s/d``; attention runs in d block
  steps of ``c = alpha1*s^2 / (eff*d^2)`` each (``eff`` = ring_efficiency, the
  block kernels' throughput relative to one flash-attention call, ~0.9 for
  ring-flash-attn). Each step also moves K/V blocks of ``s/d`` tokens for every
  layer, three times (forward K/V, backward K/V, backward dK/dV):
  ``m = 3*L*(s/d)*kv_bytes/bw_p2p + 2*L*latency``. Transfers overlap the block
  compute, so attention takes ``c + (d-1)*max(c, m)``. ``bw_p2p`` is the
  intra-node bandwidth when the group fits in a node, else the inter-node one.
- ulysses (degree u = d <= heads): linear ``alpha2*s/d``; attention
  ``alpha1*s^2*imb/d`` where ``imb = ceil(H/u)*u/H`` is the head imbalance of
  an uneven head split; plus eight all-to-alls per layer (q, k, v, out
  forward; their gradients backward), not overlapped:
  ``L*a2a_bytes*(s/d)*(u-1)/u / bw_a2a(d) + 8*L*latency``, where
  ``bw_a2a`` collapses once the group spans nodes (see `Cluster`).
- hybrid (Ulysses degree u inside a node, ring of r = d/u across): the ring
  formula over r steps on K/V shards of ``s/r`` tokens and ``1/u`` of the heads,
  plus the Ulysses all-to-alls over u ranks inside the node.

Memory: with ``memory_model`` set (the runtime sets it from the run's
``memory.*``, see `longctx.scheduler.memory_model`), a rank holds as many
tokens as that model's peak fits in ``memory_per_rank_gb``. Without it (the
planner's own default): activations take ``activation_bytes_per_token*(1 - offload_fraction)``
bytes per token, split evenly over the group; model states (weights, grads,
Adam) take ``state_bytes_per_param*num_params`` bytes sharded over the whole
world (FSDP); ``reserved_gb`` per rank is kept free. A group's sequences run one
after another (or packed while they fit), so a sequence of s tokens fits a
group of d ranks iff ``s <= d * max_tokens_per_rank``.

Measured shapes and overheads (all default off; `longctx profile` sets them):
``measured_shapes`` maps a shape key ``"kind:size:ulysses_degree"`` (see
`shape_key`) to a fit ``[a_ms, b_ms_per_token, c_ms_per_token2]`` measured on
the machine; a sequence of ``s`` tokens on that shape then takes
``a + b*s + c*s^2`` ms instead of the formulas above, which still price every
shape that was not measured (plus ``sequence_overhead_ms`` per sequence, the
fixed cost of one forward+backward call). ``step_overhead_ms`` is the per-step
time outside the waves (gradient sync, optimizer, step hand-off); it is the
same for every plan of a step, so plans and their step times leave it out; the
trainer adds it to the plan's time to predict the step's wall time
(``predicted_step_ms`` in the step metrics).

Load (CPU boxes shared with other jobs): ``core_shares`` maps a measured
shape's key to the CPU seconds per wall second its busy ranks got while the
profile timed it (none on GPUs). It differs by shape (a rank of a 4-rank ring
waits for its peers: 0.26 here, a local rank 0.5 with 4 ranks on 2 cores), so a
step's expected share is the shapes' shares weighted by the plan's busy
rank-time (`longctx.scheduler.step_prediction`). A step's waves need the same
CPU seconds whatever else runs, so their wall time scales as ``expected share
/ measured share``; `load_scale` gives that factor from the step before, and
the trainer predicts ``plan time * load_scale + step_overhead_ms``. The factor
is the same for every plan of a step, so plans ignore it.

Profile files: YAML or JSON mapping whose keys are the field names of
`CostModel` (any subset; missing keys keep the defaults), or a full cost
profile whose ``cost_model`` entry is such a mapping (see
`longctx.scheduler.cost_profile`, written by `longctx profile`).
`CostModel.to_profile(path)` writes the flat form.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from longctx.scheduler.cluster import Cluster, load_mapping
from longctx.scheduler.errors import SchedulerInputError

KINDS = ("local", "ring", "ulysses", "hybrid")
#: node multiples tried for groups larger than a node (1.5 x 2^k steps keep the list short)
_NODE_MULTIPLES_BASE = (1, 2, 3, 4, 6)


@dataclass(frozen=True, order=True)
class GroupShape:
    """A group's size and attention kind. `ulysses_degree` is 1 for ring/local, d for ulysses."""

    size: int
    kind: str
    ulysses_degree: int

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise SchedulerInputError(f"GroupShape.kind={self.kind!r}: choose one of {list(KINDS)}")
        if self.size < 1 or (self.kind == "local") != (self.size == 1):
            raise SchedulerInputError(f"GroupShape size={self.size} kind={self.kind!r}: kind 'local' iff size 1")
        expected = {"local": 1, "ring": 1, "ulysses": self.size}.get(self.kind)
        if expected is not None and self.ulysses_degree != expected:
            raise SchedulerInputError(
                f"GroupShape {self.kind} of size {self.size}: ulysses_degree must be {expected}, got {self.ulysses_degree}"
            )
        if self.kind == "hybrid" and not (1 < self.ulysses_degree < self.size and self.size % self.ulysses_degree == 0):
            raise SchedulerInputError(
                f"GroupShape hybrid of size {self.size}: ulysses_degree={self.ulysses_degree} must divide the size, 1 < u < size"
            )

    @staticmethod
    def make(size: int, kind: str, ulysses_degree: int | None = None) -> "GroupShape":
        """A shape with the default Ulysses degree for its kind."""
        if kind == "hybrid" and ulysses_degree is None:
            raise SchedulerInputError("GroupShape.make: kind 'hybrid' needs an ulysses_degree")
        default = {"local": 1, "ring": 1, "ulysses": size}.get(kind, ulysses_degree)
        return GroupShape(size, kind, default if ulysses_degree is None else ulysses_degree)


@dataclass(frozen=True)
class CostModel:
    """Per-sequence time (ms) and memory model; defaults = 7B Llama-like on H100-class GPUs."""

    attention_ms_per_token2: float = 5.128e-6  #: alpha1, causal fwd+bwd attention, ms per token^2
    linear_ms_per_token: float = 0.184  #: alpha2, all non-attention work, ms per token
    num_layers: int = 32
    num_heads: int = 32
    num_kv_heads: int = 32
    head_dim: int = 128
    bytes_per_element: int = 2  #: bf16 activations on the wire
    ring_efficiency: float = 0.9  #: throughput of ring block kernels relative to one flash call
    activation_bytes_per_token: float = 524288.0  #: resident activations per token (recompute), bytes
    offload_fraction: float = 0.0  #: fraction of activations offloaded to host memory, in [0, 1)
    num_params: float = 6.74e9
    state_bytes_per_param: float = 16.0  #: bf16 weight+grad, fp32 master+Adam m,v; sharded over the world
    reserved_gb: float = 8.0  #: per-rank memory kept free (allocator, buffers, framework)
    sequence_overhead_ms: float = 0.0  #: fixed time of one sequence's forward+backward call, ms
    step_overhead_ms: float = 0.0  #: per-step time outside the waves (grad sync, optimizer), ms
    #: shape key -> CPU s per wall s of its busy ranks while the profile timed it (empty: no load scaling)
    core_shares: dict = field(default_factory=dict, hash=False)
    #: shape key -> measured [a ms, b ms/token, c ms/token^2]; replaces the formulas for that shape
    measured_shapes: dict = field(default_factory=dict, hash=False)
    #: the run's `memory_model.MemoryModel`: when set, it alone gives the per-rank token capacity (the
    #: fields activation_bytes_per_token, offload_fraction, num_params, state_bytes_per_param are unused)
    memory_model: Any = field(default=None, compare=False, hash=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "measured_shapes", _checked_fits(self.measured_shapes))
        object.__setattr__(self, "core_shares", _checked_shares(self.core_shares))
        for f in fields(self):
            if f.name in ("measured_shapes", "core_shares", "memory_model"):
                continue
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise SchedulerInputError(f"CostModel.{f.name}={value!r}: must be a number")
            if f.name in ("offload_fraction", "reserved_gb", "sequence_overhead_ms", "step_overhead_ms"):
                if value < 0:
                    raise SchedulerInputError(f"CostModel.{f.name}={value!r}: must be >= 0")
                continue
            if not value > 0:
                raise SchedulerInputError(f"CostModel.{f.name}={value!r}: must be > 0")
        if not 0 <= self.offload_fraction < 1:
            raise SchedulerInputError(f"CostModel.offload_fraction={self.offload_fraction!r}: must be in [0, 1)")
        if self.reserved_gb < 0:
            raise SchedulerInputError(f"CostModel.reserved_gb={self.reserved_gb!r}: must be >= 0")
        if not 0 < self.ring_efficiency <= 1:
            raise SchedulerInputError(f"CostModel.ring_efficiency={self.ring_efficiency!r}: must be in (0, 1]")

    # ---- memory ---------------------------------------------------------------------------
    def max_tokens_per_rank(self, cluster: Cluster) -> int:
        """Most activation tokens one rank holds after model states and the reserve."""
        if self.memory_model is not None:
            return _memory_model_capacity(self.memory_model, cluster)
        states_gb = self.state_bytes_per_param * self.num_params / cluster.num_ranks / 1e9
        free_bytes = (cluster.memory_per_rank_gb - states_gb - self.reserved_gb) * 1e9
        if free_bytes <= 0:
            raise SchedulerInputError(
                f"Cluster.memory_per_rank_gb={cluster.memory_per_rank_gb}: model states ({states_gb:.1f} GB/rank) "
                f"plus reserve ({self.reserved_gb} GB) leave no room for activations; use more memory or ranks"
            )
        return int(free_bytes // (self.activation_bytes_per_token * (1.0 - self.offload_fraction)))

    def min_group_size(self, length: int, cluster: Cluster) -> int:
        """Fewest ranks whose memory holds one sequence of `length` tokens."""
        return -(-int(length) // self.max_tokens_per_rank(cluster))

    # ---- time -----------------------------------------------------------------------------
    def time_ms(self, lengths, shape: GroupShape, cluster: Cluster) -> np.ndarray:
        """Time (ms) of each sequence in `lengths` (tokens, array-like) run alone on `shape`."""
        s = np.asarray(lengths, dtype=np.float64)
        fit = self.measured_shapes.get(shape_key(shape))
        if fit is not None:
            return fit[0] + fit[1] * s + fit[2] * s * s
        return self.sequence_overhead_ms + self._formula_ms(s, shape, cluster)

    def _formula_ms(self, s: np.ndarray, shape: GroupShape, cluster: Cluster) -> np.ndarray:
        """The analytic time (ms) of each of `s` tokens' sequences on `shape` (module docstring)."""
        d = shape.size
        linear = self.linear_ms_per_token * s / d
        attention = self.attention_ms_per_token2 * s * s
        if shape.kind == "local":
            return linear + attention
        if shape.kind == "ring":
            return linear + self._ring_ms(s, attention / d, d, heads_fraction=1.0, group_size=d, cluster=cluster)
        u = shape.ulysses_degree
        imbalance = math.ceil(self.num_heads / u) * u / self.num_heads
        a2a = self._alltoall_ms(s / d, u, d if shape.kind == "ulysses" else u, cluster)
        if shape.kind == "ulysses":
            return linear + attention * imbalance / d + a2a
        ring_steps = d // u
        return linear + a2a + self._ring_ms(
            s, attention * imbalance / d, ring_steps, heads_fraction=1.0 / u, group_size=d, cluster=cluster
        )

    def _ring_ms(self, s, attention_per_rank, steps: int, heads_fraction: float, group_size: int, cluster: Cluster):
        """Ring attention over `steps` hops: per-step compute c overlapped with K/V transfer m."""
        layers = self.num_layers
        kv_bytes = 2 * self.num_kv_heads * self.head_dim * self.bytes_per_element * heads_fraction
        step_compute = attention_per_rank / (self.ring_efficiency * steps)
        step_comm = 3 * layers * (s / steps) * kv_bytes / (cluster.p2p_gbps(group_size) * 1e6) + (
            2 * layers * cluster.link_latency_us / 1e3
        )
        return step_compute + (steps - 1) * np.maximum(step_compute, step_comm)

    def _alltoall_ms(self, tokens_per_rank, degree: int, bandwidth_group: int, cluster: Cluster):
        """Eight all-to-alls per layer over `degree` ranks (q, k, v, out and their gradients)."""
        layers = self.num_layers
        per_token = 2 * (2 * self.num_heads + 2 * self.num_kv_heads) * self.head_dim * self.bytes_per_element
        volume = tokens_per_rank * per_token * (degree - 1) / degree
        return layers * volume / (cluster.alltoall_gbps(bandwidth_group) * 1e6) + 8 * layers * cluster.link_latency_us / 1e3

    # ---- candidate shapes ---------------------------------------------------------------
    def shapes(self, cluster: Cluster, kinds: tuple[str, ...] = ("ring", "ulysses", "hybrid"),
               sizes: tuple[int, ...] | None = None) -> list[GroupShape]:
        """Candidate group shapes on `cluster`: local plus every kind in `kinds` at `sizes`.

        Default sizes: every size up to a node, then whole nodes in steps 1, 2, 3, 4, 6 x 2^k.
        Hybrid uses Ulysses degrees that divide the node (so Ulysses stays inside a node).
        """
        return list(_shapes(cluster.ranks_per_node, cluster.num_ranks, self.num_heads, tuple(kinds),
                            None if sizes is None else tuple(sizes)))

    # ---- files --------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """The profile fields as plain data (the run-specific `memory_model` is not part of a profile)."""
        data = asdict(replace(self, memory_model=None))
        del data["memory_model"]
        return data

    def to_profile(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def from_dict(cls, data: dict, where: str) -> "CostModel":
        """A cost model from a mapping of field names (any subset); `where` names the source in errors."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise SchedulerInputError(f"{where}: unknown key(s) {unknown}; known: {sorted(known)}")
        return cls(**data)

    @classmethod
    def from_profile(cls, path: str | Path) -> "CostModel":
        """The cost model of a flat profile file or of a full cost profile's ``cost_model`` entry."""
        data = load_mapping(path, "cost-model profile")
        if isinstance(data.get("cost_model"), dict):
            return cls.from_dict(data["cost_model"], f"cost profile {str(path)!r} cost_model")
        return cls.from_dict(data, f"cost-model profile {str(path)!r}")


def load_scale(expected_core_share: float, measured_core_share: float | None) -> float:
    """Factor on a plan's time (ms) for the machine's load: ``expected / measured`` core shares (CPU s per
    wall s of a busy rank) of one step (see the module docstring); 1 when either is unknown (0 or None)."""
    if not expected_core_share or not measured_core_share:
        return 1.0
    return expected_core_share / measured_core_share


def _memory_model_capacity(memory_model: Any, cluster: Cluster) -> int:
    """The memory model's tokens per rank on `cluster`'s world and device memory; error when none fit."""
    model = replace(memory_model, world_size=cluster.num_ranks)
    capacity = model.max_tokens_per_rank(cluster.memory_per_rank_gb * 1e9)
    if capacity < 1:
        fixed = model.breakdown(0)
        raise SchedulerInputError(
            f"Cluster.memory_per_rank_gb={cluster.memory_per_rank_gb}: the step's fixed memory "
            f"({fixed.peak_bytes / 1e9:.1f} GB/rank: " + ", ".join(f"{k} {v / 1e9:.1f}" for k, v in fixed.device.items())
            + " GB) leaves no room for one token; shard or offload the optimizer (memory.optimizer_*), "
            "or use more memory per rank")
    return capacity


def shape_key(shape: GroupShape) -> str:
    """The key of `shape` in `CostModel.measured_shapes`: ``"kind:size:ulysses_degree"``."""
    return f"{shape.kind}:{shape.size}:{shape.ulysses_degree}"


def _parsed_key(key, table: str) -> GroupShape:
    """The shape of a key ``"kind:size:ulysses_degree"`` of `CostModel.<table>`; errors name the key."""
    try:
        kind, size, degree = str(key).split(":")
        size, degree = int(size), int(degree)
    except ValueError:
        raise SchedulerInputError(
            f"CostModel.{table} key {key!r}: write 'kind:size:ulysses_degree', e.g. 'ring:2:1'") from None
    try:
        return GroupShape(size, kind, degree)
    except SchedulerInputError as err:
        raise SchedulerInputError(f"CostModel.{table} key {key!r}: {err}") from None


def _checked_shares(table) -> dict[str, float]:
    """`core_shares` validated: keys parse as shapes, values are numbers > 0."""
    if not isinstance(table, dict):
        raise SchedulerInputError(f"CostModel.core_shares={table!r}: must map 'kind:size:ulysses_degree' to a share")
    clean = {}
    for key, share in table.items():
        shape = _parsed_key(key, "core_shares")
        if isinstance(share, bool) or not isinstance(share, (int, float)) or not share > 0:
            raise SchedulerInputError(f"CostModel.core_shares[{key!r}]={share!r}: must be CPU s per wall s, > 0")
        clean[shape_key(shape)] = float(share)
    return clean


def _checked_fits(table) -> dict[str, tuple[float, float, float]]:
    """`measured_shapes` validated: keys parse as shapes, values are three numbers >= 0."""
    if not isinstance(table, dict):
        raise SchedulerInputError(f"CostModel.measured_shapes={table!r}: must map 'kind:size:ulysses_degree' to [a, b, c]")
    clean = {}
    for key, fit in table.items():
        shape = _parsed_key(key, "measured_shapes")
        ok = isinstance(fit, (list, tuple)) and len(fit) == 3 and all(
            isinstance(x, (int, float)) and not isinstance(x, bool) and x >= 0 for x in fit)
        if not ok:
            raise SchedulerInputError(
                f"CostModel.measured_shapes[{key!r}]={fit!r}: must be [a ms, b ms/token, c ms/token^2], each >= 0")
        clean[shape_key(shape)] = tuple(float(x) for x in fit)
    return clean


def default_sizes(ranks_per_node: int, num_ranks: int) -> tuple[int, ...]:
    """Group sizes: 1..ranks_per_node, then whole nodes 1,2,3,4,6 x 2^k up to the cluster."""
    sizes = set(range(1, min(ranks_per_node, num_ranks) + 1))
    num_nodes = num_ranks // ranks_per_node
    scale = 1
    while scale <= num_nodes:
        sizes.update(m * scale * ranks_per_node for m in _NODE_MULTIPLES_BASE if m * scale <= num_nodes)
        scale *= 8
    return tuple(sorted(sizes))


@lru_cache(maxsize=64)
def _shapes(ranks_per_node: int, num_ranks: int, num_heads: int, kinds: tuple[str, ...],
            sizes: tuple[int, ...] | None) -> tuple[GroupShape, ...]:
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown:
        raise SchedulerInputError(f"kinds={list(kinds)}: unknown kind(s) {unknown}; choose from {list(KINDS)}")
    out = [GroupShape.make(1, "local")]
    for d in sizes if sizes is not None else default_sizes(ranks_per_node, num_ranks):
        if d < 2 or d > num_ranks or (d > ranks_per_node and d % ranks_per_node):
            continue
        if "ring" in kinds:
            out.append(GroupShape.make(d, "ring"))
        if "ulysses" in kinds and d <= num_heads:
            out.append(GroupShape.make(d, "ulysses"))
        if "hybrid" in kinds:
            inner = ranks_per_node if d > ranks_per_node else d
            out.extend(GroupShape(d, "hybrid", u) for u in range(2, min(inner, num_heads) + 1)
                       if inner % u == 0 and d % u == 0 and u < d)
    return tuple(out)
