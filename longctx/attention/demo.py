"""`longctx demo`: context-parallel attention on 4 CPU processes vs one process.

Spawns 4 gloo ranks, runs ring, Ulysses and hybrid (2 x 2) attention forward
and backward on a packed batch of uneven documents with GQA (8 query heads,
2 kv heads), and prints the largest absolute and relative error of the output
and of the q/k/v gradients against the single-process reference on the
unsharded batch. Exit code 0 when every relative error is within
`PARITY_REL_TOL`, else 1.
"""
from __future__ import annotations

import argparse
import time

from longctx.attention.parity import (
    PARITY_REL_TOL,
    QUANTITIES,
    ParityCase,
    reference_results,
    relative_errors,
    run_cases,
)
from longctx.testing import GlooPool

#: documents of the demo batch (tokens); they divide nothing
DEMO_LENGTHS = (1, 7, 300, 33, 129, 64)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="longctx demo", description=__doc__.splitlines()[0])
    parser.add_argument("--world-size", type=int, default=4, help="number of CPU processes (default 4)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    cases = [
        ParityCase(DEMO_LENGTHS, kind=kind, ulysses_degree=degree)
        for kind, degree in (("ring", None), ("ulysses", None), ("hybrid", 2 if args.world_size % 2 == 0 else None))
    ]
    with GlooPool(args.world_size) as pool:
        per_rank = pool.run(run_cases, cases)
    reference = reference_results(cases[0])
    print(f"packed batch: documents {list(DEMO_LENGTHS)}, Hq=8, Hkv=2, head_dim=16, fp32, "
          f"{args.world_size} gloo processes")
    print(f"{'kind':<9}" + "".join(f"{q + ' abs':>12}{q + ' rel':>12}" for q in QUANTITIES))
    worst = 0.0
    for i, case in enumerate(cases):
        results = [r[i] for r in per_rank]
        absolute = relative_errors(case, results, reference, norm="abs")
        relative = relative_errors(case, results, reference, norm="max")
        worst = max(worst, *relative.values())
        print(f"{case.kind:<9}" + "".join(f"{absolute[q]:>12.2e}{relative[q]:>12.2e}" for q in QUANTITIES))
    verdict = "OK" if worst <= PARITY_REL_TOL else "FAILED"
    print(f"max relative error {worst:.2e} (tolerance {PARITY_REL_TOL:.0e}): {verdict}; "
          f"{time.perf_counter() - start:.1f} s")
    return 0 if worst <= PARITY_REL_TOL else 1
