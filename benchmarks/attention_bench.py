"""`longctx bench attention`: time and bytes sent per rank for each kind and group size.

CPU: for group sizes 1-4 on gloo processes (one thread each) and each kind
(ring, Ulysses, hybrid), the forward + backward time of context-parallel
attention on one packed batch (slowest rank, median over repeats, ms) and the
payload bytes each rank sends (P2P/all-to-all, counted by
`longctx.attention.TrafficCounter`; max and mean over ranks). With CUDA, also
the single-process forward + backward time of every available backend.

Writes JSON to benchmarks/results/attention/<UTC time>-<cpu|cuda>.json with
the machine, library versions and the command line.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist

from longctx.attention import TrafficCounter, ZigzagSharding, available_backends, plan_attention
from longctx.attention.hybrid import HybridAttention
from longctx.testing import GlooPool

RESULTS_DIR = Path(__file__).resolve().parent / "results" / "attention"
#: a long-tailed packed batch (tokens per document)
FULL_LENGTHS = (2048, 700, 300, 129, 64, 33, 7, 1)
QUICK_LENGTHS = (300, 129, 33, 7, 1)
KINDS = ("ring", "ulysses", "hybrid")


def _batch(lengths, hq, hkv, d, dtype, device, seed=0):
    gen = torch.Generator().manual_seed(seed)
    n = sum(lengths)
    tensors = [torch.randn(n, h, d, generator=gen) for h in (hq, hkv, hkv, hq)]
    cu = [0]
    for length in lengths:
        cu.append(cu[-1] + length)
    return [t.to(device=device, dtype=dtype) for t in tensors], cu


def _fwd_bwd(q, k, v, dout, plan):
    q, k, v = (t.detach().requires_grad_() for t in (q, k, v))
    HybridAttention.apply(q, k, v, plan).backward(dout)


def rank_timing(kind: str, lengths, hq: int, hkv: int, d: int, repeats: int) -> dict:
    """On every rank: {"ms": [fwd+bwd ms per repeat], "bytes_sent": per fwd+bwd, "ulysses_degree": U}."""
    rank, size = dist.get_rank(), dist.get_world_size()
    (q, k, v, dout), cu = _batch(lengths, hq, hkv, d, torch.float32, "cpu")
    sharding = ZigzagSharding(cu, size)
    q, k, v, dout = (sharding.shard(t, rank) for t in (q, k, v, dout))
    traffic = TrafficCounter()
    plan = plan_attention(q, k, v, cu, kind=kind, group=dist.group.WORLD, backend="reference", traffic=traffic)
    _fwd_bwd(q, k, v, dout, plan)  # warm-up, and one pass of traffic
    bytes_sent = traffic.bytes_sent
    times = []
    for _ in range(repeats):
        dist.barrier()
        start = time.perf_counter()
        _fwd_bwd(q, k, v, dout, plan)
        times.append((time.perf_counter() - start) * 1e3)
    return {"ms": times, "bytes_sent": bytes_sent, "ulysses_degree": plan.ulysses_degree}


def cpu_suite(lengths, group_sizes, hq, hkv, d, repeats) -> list[dict]:
    rows = []
    for size in group_sizes:
        with GlooPool(size) as pool:
            for kind in KINDS:
                per_rank = pool.run(rank_timing, kind, lengths, hq, hkv, d, repeats)
                slowest = [max(r["ms"][i] for r in per_rank) for i in range(repeats)]
                sent = [r["bytes_sent"] for r in per_rank]
                row = {
                    "kind": kind, "group_size": size, "ulysses_degree": per_rank[0]["ulysses_degree"],
                    "fwd_bwd_ms_median": statistics.median(slowest), "fwd_bwd_ms_min": min(slowest),
                    "bytes_sent_per_rank_max": max(sent), "bytes_sent_per_rank_mean": statistics.mean(sent),
                }
                rows.append(row)
                print(f"{kind:<8} P={size} U={row['ulysses_degree']}  {row['fwd_bwd_ms_median']:9.1f} ms  "
                      f"sent/rank max {row['bytes_sent_per_rank_max'] / 1e6:8.3f} MB", flush=True)
    return rows


def cuda_suite(lengths, hq, hkv, d, repeats) -> list[dict]:
    """Single-process fwd+bwd time of each available backend on CUDA (bf16)."""
    from longctx.attention import context_parallel_attention

    device = torch.device("cuda")
    (q, k, v, dout), cu = _batch(lengths, hq, hkv, d, torch.bfloat16, device)
    rows = []
    for backend in available_backends(device):
        def step():
            qq, kk, vv = (t.detach().requires_grad_() for t in (q, k, v))
            context_parallel_attention(qq, kk, vv, cu, backend=backend).backward(dout)

        step()
        times = []
        for _ in range(repeats):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            step()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end))
        rows.append({"backend": backend, "fwd_bwd_ms_median": statistics.median(times), "dtype": "bfloat16"})
        print(f"cuda {backend:<10} {rows[-1]['fwd_bwd_ms_median']:9.2f} ms", flush=True)
    return rows


def _environment() -> dict:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).parent, check=False).stdout.strip()
    except OSError:
        commit = ""
    return {
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpu_count": os.cpu_count(),
                    "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None},
        "versions": {"python": platform.python_version(), "torch": torch.__version__, "git_commit": commit},
        "command": " ".join(["longctx", "bench", "attention", *sys.argv[3:]]) if sys.argv[1:3] == ["bench", "attention"]
        else " ".join(sys.argv),
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="longctx bench attention", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small batch, 2 repeats (a smoke run)")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats (default 5, quick 2)")
    parser.add_argument("--group-sizes", type=int, nargs="+", default=[1, 2, 3, 4])
    parser.add_argument("--out-dir", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    lengths = QUICK_LENGTHS if args.quick else FULL_LENGTHS
    repeats = args.repeats or (2 if args.quick else 5)
    hq, hkv, d = 8, 2, 64
    config = {"lengths": list(lengths), "num_q_heads": hq, "num_kv_heads": hkv, "head_dim": d,
              "dtype_cpu": "float32", "backend_cpu": "reference", "repeats": repeats,
              "threads_per_rank": 1, "time": "slowest rank per repeat, median over repeats, ms"}
    result = {**_environment(), "config": config, "cpu_gloo": cpu_suite(lengths, args.group_sizes, hq, hkv, d, repeats)}
    if torch.cuda.is_available():
        result["cuda_single_process"] = cuda_suite(lengths, hq, hkv, d, repeats)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    suffix = "cuda" if torch.cuda.is_available() else "cpu"
    path = args.out_dir / f"{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{suffix}{'-quick' if args.quick else ''}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")
    return 0
