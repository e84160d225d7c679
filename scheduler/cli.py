"""`longctx plan`: plan one step and show it.

    longctx plan --lengths lengths.txt --ranks 64 --out plan.json
    longctx plan --workload web --ranks 512 --seed 3 --out plan.json
    longctx plan --workload longmix --cluster cluster.yaml --cost-profile profile.json --out plan.json

Prints a table (one row per group, longest first, with the wave, ranks, kind,
Ulysses degree, sequences, tokens and modelled time) and writes the Plan JSON to
``--out``. Input is checked before any work (`cli_inputs`: strict numbers,
UTF-8 lengths files, a writable ``--out``); on an error nothing is written, one
line names the problem and the exit code is 2.
"""
from __future__ import annotations

import argparse
import heapq
import os
import sys
import tempfile
from pathlib import Path

from longctx.scheduler.cluster import Cluster
from longctx.scheduler.cost_model import CostModel
from longctx.scheduler.cost_profile import planning_inputs
from longctx.scheduler.errors import SchedulerInputError
from longctx.scheduler.gc_pause import gc_paused
from longctx.scheduler.milp import SOLVERS
from longctx.scheduler.plan import Plan
from longctx.scheduler.planner import METHODS, plan_step
from longctx.scheduler.simulator import group_times_ms
from longctx.scheduler.cli_inputs import OneLineErrorParser, check_output_file, count_arg, finite_arg, read_lengths_file
from longctx.scheduler.step_sampling import sample_steps
from longctx.scheduler.workloads import SAMPLERS

#: plans of up to this many sequences are written indented (for reading); larger ones compact, since
#: json's indenting encoder is pure Python (seconds on a 1.6M-sequence plan; compact: under one)
INDENTED_MAX_SEQUENCES = 10_000


def _parser() -> argparse.ArgumentParser:
    p = OneLineErrorParser(prog="longctx plan", description="Plan one step's dynamic data x context-parallel mesh.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--lengths", type=Path, help="text file: one sequence length (tokens) per line")
    src.add_argument("--workload", choices=sorted(SAMPLERS), help="sample one step from a workload")
    p.add_argument("--seed", type=count_arg(0), default=0, help="sampler seed (with --workload)")
    p.add_argument("--tokens-per-rank", type=count_arg(1), default=16384, help="step budget per rank (with --workload)")
    p.add_argument("--cluster", type=Path, help="cluster YAML/JSON (else --ranks etc.)")
    p.add_argument("--ranks", type=count_arg(1), default=64)
    p.add_argument("--ranks-per-node", type=count_arg(1), default=8)
    p.add_argument("--memory-gb", type=finite_arg(0.0, inclusive=False), default=80.0, help="memory per rank, GB")
    p.add_argument("--cost-profile", type=Path,
                   help="cost profile YAML/JSON written by `longctx profile` (its links replace the cluster's); "
                        "else the 7B/H100 defaults")
    p.add_argument("--method", choices=METHODS, default="milp")
    p.add_argument("--solver", choices=SOLVERS, default="highs")
    p.add_argument("--time-limit", type=finite_arg(0.0, inclusive=True), default=1.0,
                   help="wall-clock limit of the whole planning, preparation included, seconds: the static and "
                        "quick (greedy) plans always run, later stages only while their estimated cost fits, the "
                        "rest are skipped and named; the search is otherwise bounded by deterministic work limits")
    p.add_argument("--out", type=Path, default=Path("plan.json"), help="where to write the Plan JSON")
    p.add_argument("--rows", type=count_arg(0), default=30, help="groups shown in the table (longest first)")
    return p


def _lengths(args, cluster: Cluster, cost_model: CostModel) -> list[int]:
    if args.lengths is not None:
        return read_lengths_file(args.lengths)
    budget = args.tokens_per_rank * cluster.num_ranks
    longest = cost_model.max_tokens_per_rank(cluster) * cluster.num_ranks
    return sample_steps(args.workload, args.seed, budget, 1, min(budget, longest))[0]


def format_plan(plan: Plan, durations_ms: list[float], rows: int) -> str:
    """A readable table of the plan's groups, longest first, with a header of totals."""
    lines = [
        f"method {plan.method}: predicted {plan.predicted_step_time_ms:.1f} ms, lower bound "
        f"{plan.lower_bound_ms:.1f} ms (gap {100 * plan.gap_to_bound():.2f}%), solved in {plan.solve_time_s:.2f} s",
        f"{plan.world_size} ranks, {len(plan.lengths)} sequences, {sum(plan.lengths)} tokens, {len(plan.waves)} waves",
        f"{'wave':>4} {'ranks':>13} {'kind':>8} {'u':>3} {'seqs':>6} {'tokens':>10} {'time_ms':>10}",
    ]
    entries = [(w, g, d) for (w, g), d in zip(plan.groups(), durations_ms)]
    for w, g, d in heapq.nsmallest(rows, entries, key=lambda e: (-e[2], e[0], e[1].ranks[0])):
        span = f"{g.ranks[0]}" if len(g.ranks) == 1 else f"{g.ranks[0]}-{g.ranks[-1]}({len(g.ranks)})"
        tokens = sum(plan.lengths[i] for i in g.sequences)
        lines.append(f"{w:>4} {span:>13} {g.kind:>8} {g.ulysses_degree:>3} {len(g.sequences):>6} {tokens:>10} {d:>10.1f}")
    if len(entries) > rows:
        lines.append(f"... {len(entries) - rows} more groups")
    lines.extend(f"note: {n}" for n in plan.notes)
    return "\n".join(lines)


def write_atomically(path: Path, text: str) -> None:
    """Write `text` to `path` via a temporary file, so a failure leaves nothing partial."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@gc_paused()  # a 100,000-rank plan is ~100K small objects without cycles (`gc_pause.py`)
def plan_main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    try:
        check_output_file(args.out)
        cluster = Cluster.from_file(args.cluster) if args.cluster else Cluster(
            args.ranks, args.ranks_per_node, args.memory_gb)
        cluster, cost_model = planning_inputs(args.cost_profile, cluster)
        lengths = _lengths(args, cluster, cost_model)
        plan = plan_step(lengths, cluster, cost_model=cost_model, method=args.method, solver=args.solver,
                         time_limit_s=args.time_limit)
    except SchedulerInputError as err:
        print(f"longctx plan: error: {err}", file=sys.stderr)
        return 2
    print(format_plan(plan, group_times_ms(plan, cluster, cost_model), args.rows))
    write_atomically(args.out, plan.to_json(indent=1 if len(plan.lengths) <= INDENTED_MAX_SEQUENCES else None) + "\n")
    print(f"plan written to {args.out}")
    return 0
