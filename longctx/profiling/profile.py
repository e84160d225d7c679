"""Measure a run's cost profile on the machine it runs on (every rank calls `measure_profile`).

What is measured (see the modules for how):

- `compute`: forward+backward time of one sequence on every candidate shape of
  the world (local, ring, Ulysses, hybrid at every group size the planner
  considers), all ranks busy, at several lengths, with the run's ``memory.*`` and precision as the
  trainer runs them; fitted ``a + b*s + c*s^2``
  per shape -> ``CostModel.measured_shapes``. The local fit also gives the
  formula constants for shapes not measured: ``sequence_overhead_ms = a``,
  ``linear_ms_per_token = b``, ``attention_ms_per_token2 = c``.
- `links`: P2P (rank 0 <-> 1) latency and bandwidth -> ``link_latency_us``,
  ``intra_node_p2p_gbps``; all-to-all bandwidth per group size ->
  ``alltoall_intra_gbps``; across nodes likewise when the world spans nodes
  (``LOCAL_WORLD_SIZE`` < world size), else listed under ``not_measured``.
- `overhead`: the per-step time outside the waves, measured on real
  training steps planned with the measured shapes -> ``step_overhead_ms``.
- the core share of each shape's timings (CPU s per busy wall s; CPU only) ->
  ``core_shares``, against which the trainer scales its predictions for the
  machine's load (`longctx.scheduler.step_prediction`).

The model's shape (layers, heads, head size, bytes per element, parameters,
activation bytes per token) is written too, so the profile plans this model.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Sequence

import torch
import torch.distributed as dist

from longctx.model import Decoder
from longctx.profiling.compute import Execution, ShapeSample, fit_shapes, measure_shapes
from longctx.profiling.fit import relative_errors
from longctx.profiling.links import LinkFit, measure_alltoall, measure_p2p
from longctx.profiling.overhead import measure_step_overhead
from longctx.profiling.provenance import provenance
from longctx.runtime.config import RunConfig
from longctx.scheduler import Cluster, CostModel
from longctx.scheduler.cost_model import shape_key
from longctx.scheduler.cost_profile import CostProfile

#: smallest value written for a formula constant the fit drives to zero (CostModel needs > 0)
_FLOOR = 1e-12


@dataclass(frozen=True)
class ProfileSettings:
    """How much to measure: sequence lengths (tokens), repeats, message sizes (bytes), overhead steps."""

    lengths: tuple[int, ...]
    repeats: int
    message_bytes: tuple[int, ...]
    link_repeats: int
    overhead_steps: int

    def __post_init__(self) -> None:
        if len(set(self.lengths)) < 3 or min(self.lengths) < 2:
            raise ValueError(f"ProfileSettings.lengths={self.lengths}: give >= 3 distinct lengths >= 2 tokens "
                             "(a quadratic is fitted)")
        if len(set(self.message_bytes)) < 2:
            raise ValueError(f"ProfileSettings.message_bytes={self.message_bytes}: give >= 2 distinct sizes")
        if self.repeats < 1 or self.link_repeats < 1 or self.overhead_steps < 2:
            raise ValueError(f"ProfileSettings: repeats={self.repeats} and link_repeats={self.link_repeats} must "
                             f"be >= 1, overhead_steps={self.overhead_steps} >= 2")

    @classmethod
    def for_run(cls, run: RunConfig, quick: bool) -> "ProfileSettings":
        """Lengths from 128 tokens doubling up to ``data.max_doc_tokens`` (quick: three lengths over the same
        range, 1/8, 1/3 and all of it, one repeat), so the fit never extrapolates past the run's sequences."""
        longest = run.data.max_doc_tokens
        if quick:
            return cls(lengths=tuple(sorted({max(longest // 8, 2), max(longest // 3, 3), max(longest, 4)})), repeats=1,
                       message_bytes=(4096, 4 << 20), link_repeats=3, overhead_steps=3)
        lengths = sorted({*(1 << k for k in range(7, 30) if (1 << k) < longest), longest})
        return cls(lengths=tuple(lengths), repeats=3, message_bytes=(4096, 65536, 1 << 20, 8 << 20), link_repeats=5,
                   overhead_steps=8)


def _devices() -> tuple[torch.device, torch.device]:
    """(compute device, communication device): the current CUDA device under NCCL, else the CPU."""
    if dist.get_backend() == "nccl":
        device = torch.device("cuda", torch.cuda.current_device())
        return device, device
    return torch.device("cpu"), torch.device("cpu")


def _links(world: int, ranks_per_node: int, settings: ProfileSettings, device: torch.device
           ) -> tuple[dict, dict[str, str], dict[str, dict]]:
    """Measured Cluster link fields, the ones not measured (with why), and the raw fits."""
    sizes, repeats = settings.message_bytes, settings.link_repeats
    links: dict = {}
    raw: dict[str, dict] = {}
    not_measured: dict[str, str] = {}
    one_node = "the world is one node (LOCAL_WORLD_SIZE = world size): nothing crosses nodes; the default is kept"
    if world < 2:
        why = "a world of one rank has no links; the default is kept"
        return links, {name: why for name in ("link_latency_us", "intra_node_p2p_gbps", "alltoall_intra_gbps",
                                              "inter_node_p2p_gbps", "alltoall_inter_gbps")}, raw
    intra = _fitted(lambda: measure_p2p(1, sizes, repeats, device), "p2p_intra", raw)
    if isinstance(intra, LinkFit):
        links.update(intra_node_p2p_gbps=intra.gbps, link_latency_us=intra.latency_us)
    else:
        not_measured.update(intra_node_p2p_gbps=intra, link_latency_us=intra)
    _table(links, not_measured, raw, "alltoall_intra_gbps",
           {u: lambda u=u: measure_alltoall(u, sizes, repeats, device) for u in range(2, min(ranks_per_node, world) + 1)})
    if world > ranks_per_node:
        inter = _fitted(lambda: measure_p2p(ranks_per_node, sizes, repeats, device), "p2p_inter", raw)
        if isinstance(inter, LinkFit):
            links["inter_node_p2p_gbps"] = inter.gbps
        else:
            not_measured["inter_node_p2p_gbps"] = inter
        _table(links, not_measured, raw, "alltoall_inter_gbps",
               {n: lambda n=n: measure_alltoall(n * ranks_per_node, sizes, repeats, device)
                for n in range(2, world // ranks_per_node + 1)})
    else:
        not_measured.update(inter_node_p2p_gbps=one_node, alltoall_inter_gbps=one_node)
    return links, not_measured, raw


def _fitted(measure: Callable[[], LinkFit], name: str, raw: dict) -> LinkFit | str:
    """`measure()` recorded in `raw[name]`, or why its fit failed (samples too noisy to fit)."""
    try:
        fit = measure()
    except ValueError as error:
        raw[name] = {"error": str(error)}
        return f"measured, but the fit failed ({error}); the default is kept"
    raw[name] = fit.to_dict()
    return fit


def _table(links: dict, not_measured: dict, raw: dict, field: str, measures: dict[int, Callable[[], LinkFit]]) -> None:
    """links[field] = {key: GB/s} over the fits that succeeded; the field is not measured when none did."""
    fits = {key: _fitted(measure, f"{field}[{key}]", raw) for key, measure in measures.items()}
    table = {key: fit.gbps for key, fit in fits.items() if isinstance(fit, LinkFit)}
    if table:
        links[field] = table
    failed = {key: why for key, why in fits.items() if not isinstance(why, LinkFit)}
    if failed:
        not_measured[field] = f"{'some entries' if table else 'every entry'} failed to fit: " + "; ".join(
            f"{key}: {why}" for key, why in failed.items())


def core_shares(samples: Sequence[ShapeSample]) -> dict[str, float]:
    """Shape key -> its samples' core shares weighted by their times (CPU s per busy wall s over all its
    runs, as a step's ``core_share`` weighs its waves); shapes without a measured share (CUDA) are left out."""
    by_shape: dict[str, list[ShapeSample]] = {}
    for sample in samples:
        by_shape.setdefault(shape_key(sample.shape), []).append(sample)
    shares = {}
    for key, mine in by_shape.items():
        total = sum(s.time_ms for s in mine)
        share = sum(s.core_share * s.time_ms for s in mine) / total if total > 0 else 0.0
        if share > 0:
            shares[key] = share
    return shares


def measure_profile(run: RunConfig, settings: ProfileSettings, command: str, scratch_root: Path) -> CostProfile:
    """Measure `run`'s model on this world and return its cost profile (collective; same on every rank
    up to rank 0's timings being the ones recorded). `scratch_root`: a directory every rank can read
    (the overhead fit's training steps run there and it is removed after)."""
    device, comm = _devices()
    world = dist.get_world_size()
    ranks_per_node = int(os.environ.get("LOCAL_WORLD_SIZE", world))
    torch.manual_seed(run.train.seed)
    model = Decoder(run.model).to(device)
    cluster = Cluster(num_ranks=world, ranks_per_node=ranks_per_node if world % ranks_per_node == 0 else world)
    shapes = CostModel(num_heads=run.model.n_heads).shapes(cluster)
    samples = measure_shapes(Execution.for_run(run, model, device, comm), shapes, settings.lengths, settings.repeats)
    fits = fit_shapes(samples)
    links, not_measured, link_raw = _links(world, cluster.ranks_per_node, settings, comm)
    element = next(iter(model.parameters())).element_size()
    del model

    a, b, c = fits[shape_key(shapes[0])]
    shapes_model = CostModel(
        attention_ms_per_token2=max(c, _FLOOR), linear_ms_per_token=max(b, _FLOOR), sequence_overhead_ms=a,
        num_layers=run.model.n_layers, num_heads=run.model.n_heads, num_kv_heads=run.model.n_kv_heads,
        head_dim=run.model.head_dim, bytes_per_element=element, num_params=float(run.model.num_parameters()),
        activation_bytes_per_token=4.0 * run.model.dim * run.model.n_layers, measured_shapes=fits,
    )
    overhead = measure_step_overhead(run, settings.overhead_steps,
                                     CostProfile(shapes_model, links, provenance={"model": run.model.name}),
                                     scratch_root)
    cost_model = replace(shapes_model, step_overhead_ms=overhead.overhead_ms, core_shares=core_shares(samples))
    not_measured.update(
        ring_efficiency="every ring and hybrid shape of this world is timed directly (measured_shapes); "
                        "the default applies only to larger groups priced by the formulas",
        memory="activation_bytes_per_token = 4*dim*layers (as without a profile), num_params from the model; "
               "memory is not timed",
    )
    shape_rows = [{"shape": shape_key(s.shape), "tokens": s.tokens, "measured_ms": s.time_ms, "core_share": s.core_share,
                   "fitted_ms": float(cost_model.time_ms([s.tokens], s.shape, cluster)[0])} for s in samples]
    errors = relative_errors([r["fitted_ms"] for r in shape_rows], [r["measured_ms"] for r in shape_rows])
    for row, error in zip(shape_rows, errors):
        row["fit_error"] = error
    record = provenance(command)
    record.update(world_size=world, ranks_per_node=cluster.ranks_per_node, backend=dist.get_backend(),
                  model=run.model.name, attention_backend=run.parallel.attention_backend,
                  settings=settings.__dict__)
    if device.type == "cuda":
        record["machine"]["accelerator"] = torch.cuda.get_device_name(device)
    measurements = {"shapes": shape_rows, "shape_fit_error_max": max(errors), "links": link_raw,
                    "step_overhead": overhead.to_dict()}
    return CostProfile(cost_model=cost_model, links=links, not_measured=not_measured, measurements=measurements,
                       provenance=record)
