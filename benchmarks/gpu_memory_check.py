"""One llama3-8b decoder layer, forward + backward, in each memory mode: measured vs the memory model.

    python benchmarks/gpu_memory_check.py                 # on one CUDA GPU (bf16 autocast, fp32 weights)
    python benchmarks/gpu_memory_check.py --tiny          # CPU smoke test: the tiny model, short shards

Cases: at ``--tokens`` (default 128K) every (checkpointing, offload) mode, the MLP tiled
(``memory.mlp_tile_tokens``, default 8192); at ``--long-tokens`` (default 1M) the trainer's default
memory settings (`configs/memory/default.yaml`). Each case runs ``--layers`` applications of ONE
layer's weights (each in its own saved-tensor scope, so copy-out / prefetch overlap the neighbouring
layers as in a model) on one packed document, once to warm up (not at ``--long-tokens``) and once
measured. Per case it records:

* peak: the most bytes allocated at once above the weights and the input (`longctx.runtime.memory_peak`:
  ``max_memory_allocated`` on CUDA, the profiler's allocation events on CPU);
* predicted: `longctx.scheduler.memory_model.MemoryModel` for the same settings: the layers' saved
  bytes (resident) + the offload buffers of the layers in flight + one block's backward working set
  (`MemoryModel.block_working_set`) + the block's weight gradients (``peak_vs_predicted``); and the
  first layer's saved bytes counted by the hooks vs predicted (``saved_vs_predicted``);
* seconds of forward + backward (CUDA events / wall clock);
* copy time: bytes offloaded and prefetched; ``copy_total_s`` from the pinned-copy bandwidth measured
  at start; ``copy_exposed_s`` = time of the case minus time of the same checkpointing without offload;
  ``copy_hidden_s`` = total - exposed (>= 0).

Writes JSON to ``--out`` (default benchmarks/results/memory/gpu_memory_check[_tiny].json) with the
machine, versions and command. Each case that fails (e.g. out of memory) is recorded and the rest run.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

from longctx.attention.backends import get_backend
from longctx.model import Decoder, ModelConfig
from longctx.model.decoder import run_block
from longctx.model.rope import rope_tables
from longctx.runtime.activations import RankActivations
from longctx.runtime.config import MemoryConfig
from longctx.runtime.memory_peak import PeakAllocated
from longctx.runtime.precision import compute_autocast
from longctx.scheduler.memory_model import MemoryModel

MODES = [("none", "none"), ("selective", "none"), ("full", "none"), ("tiled", "none"), ("none", "all"),
         ("selective", "checkpoints"), ("full", "checkpoints"), ("tiled", "checkpoints"), ("full", "all")]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="CPU smoke test: tiny model, fp32, short shards")
    parser.add_argument("--model", default=None, help="model preset (default llama3-8b; tiny with --tiny)")
    parser.add_argument("--tokens", type=int, default=None, help="tokens of the per-mode cases (default 131072)")
    parser.add_argument("--long-tokens", type=int, default=None, help="tokens of the default-mode case (1048576)")
    parser.add_argument("--layers", type=int, default=2, help="applications of the one layer per forward")
    parser.add_argument("--mlp-tile", type=int, default=8192, help="memory.mlp_tile_tokens of the per-mode cases")
    parser.add_argument("--out", default=None, help="JSON result file")
    return parser


def copy_bandwidth(device: torch.device, nbytes: int = 1 << 30) -> float:
    """Measured device<->pinned host copy bandwidth, bytes/s (mean of both directions); inf on CPU."""
    if device.type != "cuda":
        return float("inf")
    host = torch.empty(nbytes, dtype=torch.uint8, pin_memory=True)
    dev = torch.empty(nbytes, dtype=torch.uint8, device=device)
    torch.cuda.synchronize()
    started = time.perf_counter()
    host.copy_(dev, non_blocking=True)
    dev.copy_(host, non_blocking=True)
    torch.cuda.synchronize()
    return 2 * nbytes / (time.perf_counter() - started)


def run_case(block, config: ModelConfig, memory: MemoryConfig, tokens: int, layers: int, device: torch.device,
             precision: str) -> dict:
    """Forward + backward of `layers` applications of `block` on `tokens` tokens; measured numbers."""
    activations = RankActivations(memory, block.parameters(), device)
    cos, sin = rope_tables(torch.arange(tokens, device=device), config.head_dim, config.rope_theta)
    x = torch.randn(tokens, config.dim, device=device, requires_grad=True)
    started = time.perf_counter()
    with PeakAllocated(device) as peak, activations.micro_batch() as activation_memory:
        h, plan = x, None
        for index in range(layers):
            with activation_memory.scope(index), compute_autocast(precision, device):
                h, plan = run_block(block, h, cos, sin, [0, tokens], _LOCAL, plan, activation_memory)
        h.float().square().mean().backward()
    seconds = time.perf_counter() - started
    accounting = activations.accounting
    block.zero_grad(set_to_none=True)
    return {"seconds": seconds, "peak_bytes": peak.bytes,
            "saved_resident_bytes": accounting.peak_resident_bytes, "offloaded_bytes": accounting.offloaded_bytes,
            "prefetched_bytes": accounting.prefetched_bytes, "host_wait_s": accounting.exposed_copy_s,
            "saved_per_layer": {str(k): [v.resident, v.offloaded] for k, v in accounting.layers.items()}}


def predict(config: ModelConfig, memory: MemoryConfig, tokens: int, layers: int, precision: str,
            kernel: str, on_cpu: bool) -> dict:
    """The memory model's saved bytes per layer and the case's peak above the weights: the layers' saved bytes,
    the offload buffers in flight, one block's backward working set, and the weight gradients."""
    model = MemoryModel(config, memory, precision, attention_kernel=kernel)
    per_layer = model.saved_bytes(tokens)[0]
    resident = layers * per_layer.resident
    buffers = min(memory.offload_layers_in_flight, layers) * per_layer.offloaded
    working = sum(model.block_working_set(tokens).values())
    block_parameters = (config.num_parameters() - 2 * config.vocab_size * config.dim - config.dim) / config.n_layers
    gradients = model.residual_bytes * block_parameters
    # on CPU the host store is the same allocator's memory: every offloaded byte counts, twice once prefetched
    buffers = 2 * layers * per_layer.offloaded if on_cpu else buffers
    return {"predicted_saved_per_layer": [per_layer.resident, per_layer.offloaded],
            "predicted_peak_bytes": resident + buffers + working + gradients}


def attention_kernel(device: torch.device, dtype: torch.dtype) -> str:
    """The memory model's `attention_kernel` for the backend "auto" picks here (sdpa: counted as flash_attn)."""
    name = get_backend("auto", device, dtype).name
    return {"sdpa": "flash_attn"}.get(name, name)


class _Local:
    kind, group, ulysses_degree, backend = "local", None, None, "auto"


_LOCAL = _Local()


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    device = torch.device("cpu" if args.tiny or not torch.cuda.is_available() else "cuda")
    precision = "fp32" if device.type == "cpu" else "bf16"
    name = args.model or ("tiny" if args.tiny else "llama3-8b")
    tokens = args.tokens or (256 if args.tiny else 131072)
    long_tokens = args.long_tokens or (1024 if args.tiny else 1048576)
    mlp_tile = min(args.mlp_tile, 64) if args.tiny else args.mlp_tile
    config = ModelConfig.preset(name, n_layers=1)
    torch.manual_seed(0)
    block = Decoder(config).blocks[0].to(device)
    bandwidth = copy_bandwidth(device)
    kernel = attention_kernel(device, torch.bfloat16 if precision == "bf16" else torch.float32)
    default = MemoryConfig()
    cases = [(tokens, MemoryConfig(checkpointing=c, offload=o, mlp_tile_tokens=mlp_tile), True) for c, o in MODES]
    cases.append((long_tokens, default, False))
    results, baseline_s = [], {}
    for case_tokens, memory, warm in cases:
        row = {"tokens": case_tokens, "layers": args.layers, "checkpointing": memory.checkpointing,
               "offload": memory.offload, "mlp_tile_tokens": memory.mlp_tile_tokens,
               **predict(config, memory, case_tokens, args.layers, precision, kernel, device.type == "cpu")}
        try:
            if warm:
                run_case(block, config, memory, case_tokens, args.layers, device, precision)
            row.update(run_case(block, config, memory, case_tokens, args.layers, device, precision))
        except (RuntimeError, torch.cuda.OutOfMemoryError) as error:  # recorded; the other cases still run
            row["error"] = f"{type(error).__name__}: {error}"[:500]
            results.append(row)
            print(json.dumps(row), flush=True)
            continue
        key = (case_tokens, memory.checkpointing)
        if memory.offload == "none":
            baseline_s[key] = row["seconds"]
        moved = row["offloaded_bytes"] + row["prefetched_bytes"]
        row["copy_total_s"] = moved / bandwidth
        if memory.offload != "none" and key in baseline_s:
            row["copy_exposed_s"] = max(row["seconds"] - baseline_s[key], 0.0)
            row["copy_hidden_s"] = max(row["copy_total_s"] - row["copy_exposed_s"], 0.0)
        measured_layer, predicted_layer = sum(row["saved_per_layer"]["0"]), sum(row["predicted_saved_per_layer"])
        row["saved_vs_predicted"] = measured_layer / predicted_layer - 1
        row["peak_vs_predicted"] = row["peak_bytes"] / row["predicted_peak_bytes"] - 1
        results.append(row)
        print(json.dumps(row), flush=True)
    out = Path(args.out or f"benchmarks/results/memory/gpu_memory_check{'_tiny' if args.tiny else ''}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"command": " ".join([sys.executable, *sys.argv]), "machine": platform.node(),
            "platform": platform.platform(), "torch": torch.__version__, "device": str(device),
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor(),
            "precision": precision, "model": name, "copy_bandwidth_bytes_per_s": bandwidth,
            "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps({"meta": meta, "cases": results}, indent=2) + "\n")
    tmp.replace(out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
