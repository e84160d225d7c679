"""`longctx bench ingest [--quick] [--workers N] [--tokenizer NAME]`: ingest throughput, 1 worker vs N workers.

Ingests the embedded corpus (the standard-library sources; ``--quick``: every
fourth file) with ``workers=1`` and ``workers=N`` in the order 1, N, N, 1
(ABBA, so a drift in machine load hits both equally), checks that both
outputs are byte-identical, and writes
``benchmarks/results/ingest/ingest_<tokenizer>[_quick].json`` with the
timings, the speedup (median 1-worker time / median N-worker time), the
machine, the versions and the command.
"""
from __future__ import annotations

import argparse
import filecmp
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "ingest"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="longctx bench ingest")
    parser.add_argument("--quick", action="store_true", help="a quarter of the corpus")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2, help="the parallel run's workers")
    parser.add_argument("--tokenizer", default="bpe", help="'byte', 'bpe[-N]' or a local HF tokenizer directory")
    parser.add_argument("--out-dir", default=str(RESULTS))
    args = parser.parse_args(argv)
    from longctx.data import ingest, load_tokenizer, stdlib_source_files

    files = stdlib_source_files()[:: 4 if args.quick else 1]
    tokenizer = load_tokenizer(args.tokenizer)
    seconds: dict[int, list[float]] = {1: [], args.workers: []}
    with tempfile.TemporaryDirectory(prefix="longctx-ingest-bench-") as scratch:
        for index, workers in enumerate((1, args.workers, args.workers, 1)):
            started = time.perf_counter()
            ingest(files, f"{scratch}/w{workers}-{index}", tokenizer, workers=workers, shard_bytes=1 << 20)
            seconds[workers].append(time.perf_counter() - started)
        identical = all(filecmp.cmp(f"{scratch}/w1-0{suffix}", f"{scratch}/w{args.workers}-1{suffix}", shallow=False)
                        for suffix in (".bin", ".idx"))
    input_mb = sum(os.path.getsize(f) for f in files) / 1e6
    one, many = statistics.median(seconds[1]), statistics.median(seconds[args.workers])
    result = {"tokenizer": tokenizer.name, "files": len(files), "input_mb": round(input_mb, 2),
              "seconds": {str(k): [round(s, 2) for s in v] for k, v in seconds.items()},
              "mb_per_s": {"1": round(input_mb / one, 3), str(args.workers): round(input_mb / many, 3)},
              "speedup": round(one / many, 3), "identical_output": identical,
              "command": "longctx bench ingest " + " ".join(argv),
              "machine": {"platform": platform.platform(), "python": platform.python_version(),
                          "cpus": os.cpu_count(), "load_average": os.getloadavg()},
              "versions": {p: metadata.version(p) for p in ("longctx", "tokenizers", "numpy", "megatron-core")}}
    out = Path(args.out_dir) / f"ingest_{args.tokenizer.replace('/', '_')}{'_quick' if args.quick else ''}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
