"""`longctx bench <suite> [args]`: dispatch to a benchmark suite, imported lazily."""
from __future__ import annotations

import importlib
import sys

#: suite -> module exposing ``main(argv) -> int``
SUITES: dict[str, str] = {
    "scheduler": "longctx.benchmarks.scheduler_bench",
    "attention": "longctx.benchmarks.attention_bench",
    "train": "longctx.benchmarks.train_bench",
    "kernels": "longctx.benchmarks.kernels_bench",
}


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(f"usage: longctx bench {{{'|'.join(SUITES)}}} [args...]")
        return 0
    suite, rest = argv[0], argv[1:]
    if suite not in SUITES:
        print(f"longctx bench: unknown suite {suite!r}; choose one of {sorted(SUITES)}", file=sys.stderr)
        return 2
    return int(importlib.import_module(SUITES[suite]).main(rest) or 0)
