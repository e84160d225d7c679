"""Gradient streaming and parameter offload on this machine: step time and where the model states' bytes live.

    python -m benchmarks.state_offload_bench [--model small] [--steps 6] [--tokens 2048]

One process (a gloo world of one), the same seeds, data and plan (one local group whose sequences run as
several micro-batches), trained three times: both off (``memory.optimizer_offload=false``), gradient
streaming (``optimizer_offload=true``), and streaming with ``param_offload=true``. Reported per
configuration, over the steps after the first: median step seconds and the ratio to both off (the
configurations take turns step by step, so they share the machine's load alike) (the cost of
the hooks, host adds and weight copies; on CPU every copy is exposed, so this is an upper bound of what a
GPU pays with copies overlapped), and from the runtime's own meters the device bytes the offloads leave:
parameter storage allocated outside the steps, the most gradient bytes alive at once, the most offloaded
weight bytes materialised at once, and the host bytes (accumulators, weight copies). Writes
``benchmarks/results/runtime/state_offload.json`` with the machine, versions and command.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import sys
import time
from importlib import metadata
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "runtime"
CONFIGURATIONS = {"both off": {}, "gradient streaming": {"optimizer_offload": True},
                  "streaming + param offload": {"optimizer_offload": True, "param_offload": True}}


class _Run:
    """One configuration's model, optimizer and plan; `step()` trains one step and records its seconds."""

    def __init__(self, model_name: str, steps: int, tokens: int, memory_overrides: dict) -> None:
        import torch

        from longctx.model import Decoder, ModelConfig
        from longctx.runtime.activations import RankActivations
        from longctx.runtime.config import MemoryConfig, OptimConfig
        from longctx.runtime.optim import make_optimizer
        from longctx.runtime.param_offload import parameter_offload
        from longctx.runtime.process_groups import ProcessGroupCache
        from longctx.scheduler import Plan

        config = ModelConfig.preset(model_name)
        self.memory_overrides = memory_overrides
        memory = MemoryConfig(loss_tile_tokens=256, mlp_tile_tokens=256, **memory_overrides)
        torch.manual_seed(0)
        self.model = Decoder(config)
        self.optimizer, _ = make_optimizer(self.model, OptimConfig(warmup_steps=0), steps, memory)
        self.residency = parameter_offload(self.model, memory, self.optimizer)
        self.activations = RankActivations(memory, self.model.parameters(), torch.device("cpu"), self.residency)
        lengths = [tokens // 2, tokens // 4, tokens // 8, tokens - tokens // 2 - tokens // 4 - tokens // 8]
        self.plan = Plan.from_dict({"world_size": 1, "lengths": lengths, "method": "hand-made", "waves": [
            {"groups": [{"ranks": [0], "kind": "local", "ulysses_degree": 1,
                         "sequences": list(range(len(lengths)))}]}]}).validate()
        self.groups = ProcessGroupCache()
        self.groups.prepare(self.plan)
        generator = torch.Generator().manual_seed(1)
        self.sequences = [torch.randint(0, config.vocab_size, (n,), generator=generator) for n in lengths]
        self.seconds: list[float] = []
        self.losses: list[float] = []

    def step(self) -> None:
        from longctx.runtime.step import run_plan

        started = time.perf_counter()
        self.optimizer.zero_grad(set_to_none=True)
        self.losses.append(run_plan(self.model, self.plan, self.sequences, 0, self.groups,
                                    activations=self.activations).loss)
        self.optimizer.synchronize_gradients(1.0)
        self.optimizer.step()
        self.seconds.append(time.perf_counter() - started)

    def summary(self) -> dict:
        stream, residency = getattr(self.optimizer, "stream", None), self.residency
        params = list(self.model.parameters())
        return {"memory": self.memory_overrides, "median_step_s": statistics.median(self.seconds[1:]),
                "step_s": self.seconds, "losses": self.losses,
                "device_parameter_bytes_between_steps": sum(p.untyped_storage().nbytes() for p in params),
                "device_gradient_bytes_between_steps": sum(p.grad.numel() * p.grad.element_size()
                                                           for p in params if p.grad is not None),
                "peak_device_gradient_bytes_streamed": None if stream is None else stream.peak_device_bytes,
                "peak_device_weight_bytes_materialised": None if residency is None else residency.peak_device_bytes,
                "host_gradient_accumulator_bytes": None if stream is None else stream.host_bytes(),
                "host_weight_copy_bytes": None if residency is None else residency.host_bytes()}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="small")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--tokens", type=int, default=2048)
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    import torch
    import torch.distributed as dist

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=0, world_size=1)
    try:
        runs = {name: _Run(args.model, args.steps, args.tokens, overrides)
                for name, overrides in CONFIGURATIONS.items()}
        for _ in range(args.steps):  # round robin: the configurations share the machine's load alike
            for run in runs.values():
                run.step()
        rows = {name: run.summary() for name, run in runs.items()}
    finally:
        dist.destroy_process_group()
    baseline = rows["both off"]["median_step_s"]
    for row in rows.values():
        row["step_time_ratio_to_both_off"] = row["median_step_s"] / baseline
    record = {"command": "python -m benchmarks.state_offload_bench " + " ".join(argv), "model": args.model,
              "tokens_per_step": args.tokens, "steps": args.steps, "torch_threads": torch.get_num_threads(),
              "machine": {"platform": platform.platform(), "python": platform.python_version(),
                          "cpus": os.cpu_count()},
              "versions": {p: metadata.version(p) for p in ("longctx", "torch")}, "configurations": rows}
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "state_offload.json").write_text(json.dumps(record, indent=2) + "\n")
    for name, row in rows.items():
        print(f"{name:<28} {row['median_step_s']:.3f} s/step  x{row['step_time_ratio_to_both_off']:.3f}  "
              f"device params {row['device_parameter_bytes_between_steps']} B  "
              f"grad peak {row['peak_device_gradient_bytes_streamed']}  weights peak "
              f"{row['peak_device_weight_bytes_materialised']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
