"""`longctx memory`: the predicted per-rank peak of one step, its breakdown, and whether it fits.

    longctx memory --model llama3-8b --tokens 1048576 --ranks 1 --gpu-gb 80 [--json] [memory.KEY=VALUE ...]
    longctx memory --max-table [--json]

A sequence of ``--tokens`` tokens is split over all ``--ranks`` (one
context-parallel group), so each rank runs ``ceil(tokens / ranks)`` tokens.
Settings default to what the trainer would use: ``configs/memory/default.yaml``
and bf16 autocast (``train.precision=auto`` on CUDA); ``memory.KEY=VALUE``
overrides them (validated by `MemoryConfig`). ``--max-table`` prints the
longest sequence that fits Llama-3 8B and 70B on 1, 8 and 64 GPUs, with the
best of a few settings, and the estimated activation-offload overhead. Reads
YAML directly; never imports torch.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import asdict, replace
from importlib.resources import files

import yaml

from longctx.model.config import ModelConfig, ModelConfigError
from longctx.runtime.config import ConfigError, MemoryConfig
from longctx.scheduler.cli_inputs import OneLineErrorParser, count_arg, finite_arg
from longctx.scheduler.cost_model import CostModel
from longctx.scheduler.memory_model import MemoryModel, MemoryModelError

GB = 1e9
#: PCIe host<->device bandwidth per direction used by the offload estimate, GB/s (Gen4 x16 as measured
#: in practice; Gen5 doubles it)
PCIE_GBPS = 25.0
TABLE_MODELS = ("llama3-8b", "llama3-70b")
TABLE_RANKS = (1, 8, 64)
#: settings tried for the table, each on top of the trainer's defaults
TABLE_CANDIDATES = (
    {},
    {"optimizer_offload": True},
    {"optimizer_sharding": "zero2"},
    {"optimizer_sharding": "zero2", "optimizer_offload": True},
    {"optimizer_sharding": "zero2", "optimizer_offload": True, "loss_tile_tokens": 1024, "mlp_tile_tokens": 4096},
    {"optimizer_offload": True, "loss_tile_tokens": 1024, "mlp_tile_tokens": 4096},
    {"optimizer_offload": True, "param_offload": True},
    {"optimizer_offload": True, "param_offload": True, "offload_layers_in_flight": 1},
    {"optimizer_sharding": "zero2", "optimizer_offload": True, "param_offload": True, "offload_layers_in_flight": 1},
)


def default_memory(overrides: list[str]) -> MemoryConfig:
    """configs/memory/default.yaml with ``memory.KEY=VALUE`` overrides applied (validated)."""
    values = yaml.safe_load((files("longctx.configs") / "memory" / "default.yaml").read_text())
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.startswith("memory.") or key[len("memory."):] not in values:
            raise ConfigError(f"override {item!r}: expected memory.KEY=VALUE with KEY in {sorted(values)}")
        values[key[len("memory."):]] = yaml.safe_load(raw)
    return MemoryConfig(**values)


def offload_overhead(model: ModelConfig, tokens_per_rank: int, residual_bytes: int, cost: CostModel = CostModel(),
                     pcie_gbps: float = PCIE_GBPS) -> dict[str, float]:
    """Estimated step-time overhead of offloading each layer's checkpoint (`[n, dim]` of `residual_bytes`-byte
    elements) vs recompute only.

    Compute per layer from the cost model's measured H100 constants scaled to this
    model (linear ms/token by parameters, attention ms/token^2 by layers x dim),
    forward = 1/3 of forward+backward, recompute = one more forward; copies: the
    checkpoint out during the next layer's forward and back in during the layer
    above's backward, exposed only when longer than that compute.
    """
    n = tokens_per_rank
    scale_linear = model.matmul_parameters() / (cost.num_params or 1)
    scale_attention = (model.n_layers * model.dim) / (cost.num_layers * cost.num_heads * cost.head_dim)
    step_ms = (cost.linear_ms_per_token * scale_linear * n + cost.attention_ms_per_token2 * scale_attention * n * n)
    step_ms *= 4 / 3  # full recompute: one more forward
    layer_forward_ms = step_ms / model.n_layers / 4
    layer_backward_ms = 3 * layer_forward_ms  # backward (2 forwards) + recompute (1)
    copy_ms = residual_bytes * model.dim * n / (pcie_gbps * 1e6)
    exposed = model.n_layers * (max(0.0, copy_ms - layer_forward_ms) + max(0.0, copy_ms - layer_backward_ms))
    return {"step_ms_recompute_only": step_ms, "copy_ms_per_layer": copy_ms, "layer_forward_ms": layer_forward_ms,
            "exposed_ms": exposed,
            "overhead_fraction": exposed / step_ms if step_ms else 0.0, "pcie_gbps": pcie_gbps}


def report(model_name: str, tokens: int, ranks: int, gpu_gb: float, memory: MemoryConfig, precision: str,
           reserved_gb: float) -> dict:
    """Everything `longctx memory` prints, as one JSON-able dict."""
    model = ModelConfig.preset(model_name)
    per_rank = math.ceil(tokens / ranks)
    memory_model = MemoryModel(model, memory, precision, ranks, reserved_gb * GB)
    peak = memory_model.breakdown(per_rank, gpu_gb * GB)
    return {
        "model": model_name, "tokens": tokens, "ranks": ranks, "tokens_per_rank": per_rank, "gpu_gb": gpu_gb,
        "precision": precision, "memory": asdict(memory), "peak_gb": peak.peak_bytes / GB, "fits": peak.fits,
        "peak_phase": peak.peak_phase, "device_gb": {k: v / GB for k, v in peak.device.items()},
        "host_gb": {k: v / GB for k, v in peak.host.items()},
        "max_tokens_per_rank": memory_model.max_tokens_per_rank(gpu_gb * GB),
        "offload_overhead_estimate": offload_overhead(model, per_rank, memory_model.residual_bytes),
    }


def max_table(gpu_gb: float, precision: str, reserved_gb: float) -> list[dict]:
    """Longest sequence (over all ranks) that fits, per model and GPU count, best of TABLE_CANDIDATES."""
    rows = []
    for name in TABLE_MODELS:
        model = ModelConfig.preset(name)
        for ranks in TABLE_RANKS:
            best = None
            for candidate in TABLE_CANDIDATES:  # most tokens; then the least fixed device memory, then host memory
                memory_model = MemoryModel(model, replace(default_memory([]), **candidate), precision, ranks,
                                           reserved_gb * GB)
                fixed = memory_model.breakdown(0)
                key = (memory_model.max_tokens_per_rank(gpu_gb * GB), -fixed.peak_bytes, -sum(fixed.host.values()))
                if best is None or key > best[0]:
                    best = (key, candidate)
            (tokens, *_), candidate = best
            default = MemoryModel(model, default_memory([]), precision, ranks,
                                  reserved_gb * GB).max_tokens_per_rank(gpu_gb * GB)
            chosen = MemoryModel(model, replace(default_memory([]), **candidate), precision, ranks, reserved_gb * GB)
            overhead = offload_overhead(model, max(tokens, 1), chosen.residual_bytes)
            rows.append({"model": name, "gpus": ranks, "gpu_gb": gpu_gb, "max_sequence_tokens": tokens * ranks,
                         "max_sequence_tokens_trainer_default": default * ranks, "settings": candidate,
                         "fixed_gb_per_rank": chosen.breakdown(0).peak_bytes / GB,
                         "host_gb_per_rank": sum(chosen.breakdown(tokens).host.values()) / GB,
                         "offload_estimate": overhead})
    return rows


def _format_report(r: dict) -> str:
    lines = [f"{r['model']}: {r['tokens']} tokens over {r['ranks']} rank(s) = {r['tokens_per_rank']} tokens/rank, "
             f"{r['precision']}, {r['gpu_gb']:g} GB per GPU",
             "memory: " + " ".join(f"{k}={v}" for k, v in r["memory"].items()),
             f"peak per rank: {r['peak_gb']:.2f} GB ({r['peak_phase']}) -> {'FITS' if r['fits'] else 'DOES NOT FIT'}"]
    lines += [f"  device {k:<36} {v:10.3f} GB" for k, v in r["device_gb"].items()]
    lines += [f"  host   {k:<36} {v:10.3f} GB" for k, v in r["host_gb"].items()]
    est = r["offload_overhead_estimate"]
    lines.append(f"longest shard that fits: {r['max_tokens_per_rank']} tokens/rank")
    lines.append(f"offload overhead (ESTIMATE, {est['pcie_gbps']:g} GB/s PCIe, cost-model H100 kernel times): "
                 f"{100 * est['overhead_fraction']:.2f}% of a {est['step_ms_recompute_only'] / 1e3:.1f} s step")
    return "\n".join(lines)


def format_table(rows: list[dict]) -> str:
    """The max-sequence table as Markdown (what the README holds)."""
    lines = ["| model | GPUs (80 GB) | longest sequence | trainer defaults | settings | fixed GB/rank | "
             "host GB/rank | offload (est.): copy / layer fwd, exposed |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        est = r["offload_estimate"]
        settings = ", ".join(f"{k}={v}" for k, v in r["settings"].items()) or "defaults"
        lines.append(f"| {r['model']} | {r['gpus']} | {r['max_sequence_tokens']:,} | "
                     f"{r['max_sequence_tokens_trainer_default']:,} | {settings} | {r['fixed_gb_per_rank']:.1f} | "
                     f"{r['host_gb_per_rank']:.0f} | "
                     + (f"{est['copy_ms_per_layer']:.0f} ms / {est['layer_forward_ms']:.0f} ms, "
                        f"{100 * est['overhead_fraction']:.1f}% |" if r["max_sequence_tokens"] else "- |"))
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    p = OneLineErrorParser(prog="longctx memory", description="Predicted per-rank peak memory of one training step.")
    p.add_argument("--model", default="llama3-8b", help="model preset (configs/model/*.yaml)")
    p.add_argument("--tokens", type=count_arg(1), default=1 << 20, help="sequence length, split over all ranks")
    p.add_argument("--ranks", type=count_arg(1), default=1, help="GPUs (the world; one context-parallel group)")
    p.add_argument("--gpu-gb", type=finite_arg(0.0, False), default=80.0, help="device memory per GPU, GB")
    p.add_argument("--reserved-gb", type=finite_arg(0.0, True), default=4.0,
                   help="kept free per GPU (CUDA context, allocator)")
    p.add_argument("--precision", choices=("bf16", "fp32"), default="bf16", help="bf16: the trainer's choice on CUDA")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--max-table", action="store_true", help="longest sequence for llama3-8b/70b on 1, 8, 64 GPUs")
    p.add_argument("overrides", nargs="*", help="memory.KEY=VALUE")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.max_table:
            rows = max_table(args.gpu_gb, args.precision, args.reserved_gb)
            print(json.dumps(rows, indent=2) if args.json else format_table(rows))
            return 0
        r = report(args.model, args.tokens, args.ranks, args.gpu_gb, default_memory(args.overrides),
                   args.precision, args.reserved_gb)
    except (ConfigError, ModelConfigError, MemoryModelError) as error:
        print(f"longctx memory: {error}", file=sys.stderr)
        return 2
    print(json.dumps(r, indent=2) if args.json else _format_report(r))
    return 0 if r["fits"] else 1
