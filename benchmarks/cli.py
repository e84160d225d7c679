"""`longctx bench [<suite>] [args]`: dispatch to a benchmark suite, imported lazily; no suite: the report."""
from __future__ import annotations

import importlib
import sys

#: suite -> module exposing ``main(argv) -> int``
SUITES: dict[str, str] = {
    "scheduler": "longctx.benchmarks.scheduler_bench",
    "attention": "longctx.benchmarks.attention_bench",
    "train": "longctx.benchmarks.train_bench",
    "kernels": "longctx.benchmarks.kernels_bench",
    "communicators": "longctx.benchmarks.communicators_bench",
    "broadcast": "longctx.benchmarks.broadcast_bench",
    "ingest": "longctx.benchmarks.ingest_bench",
}


def main(argv: list[str]) -> int:
    if argv and argv[0] in ("-h", "--help"):
        print(f"usage: longctx bench [{'|'.join(SUITES)}] [args...]\n"
              "  without a suite: every suite in its quick mode -> benchmarks/results/REPORT.md "
              "(options: --suites NAME..., --out FILE)")
        return 0
    if not argv or argv[0].startswith("-"):
        from longctx.benchmarks.report import main as report_main

        return report_main(argv)
    suite, rest = argv[0], argv[1:]
    if suite not in SUITES:
        print(f"longctx bench: unknown suite {suite!r}; choose one of {sorted(SUITES)}", file=sys.stderr)
        return 2
    return int(importlib.import_module(SUITES[suite]).main(rest) or 0)
