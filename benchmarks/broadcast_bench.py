"""`longctx bench broadcast`: bytes rank 0 broadcasts per step, tokens (before) vs piece ids (now).

Composes the default main job's config (`longctx train` with no overrides,
plus ``--overrides``), draws ``--steps`` steps from its sampler and plans them
with its planner, and pickles each step's payload both ways: the Plan JSON,
the sampler state and either every sequence's int32 tokens (the earlier
runtime) or the `[pieces, 3]` int64 (document, start, stop) rows that
`longctx.runtime.step_source` broadcasts now. Output:
``benchmarks/results/runtime/broadcast_bytes.json`` (per step and summary,
machine, versions, command). Torch is not needed beyond the dataset reader.
"""
from __future__ import annotations

import argparse
import json
import pickle
import platform
import statistics
from importlib import metadata
from pathlib import Path

from longctx.data import DocumentDataset, StepSampler, default_corpus, load_tokenizer
from longctx.runtime.step_source import pieces_array, make_planner
from longctx.runtime.train_cli import compose_run_config

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "runtime"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="longctx bench broadcast", description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_OUT)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides of the main job's config")
    args = parser.parse_args(argv)
    run = compose_run_config(args.overrides)
    prefix = run.data.path or default_corpus(run.data.cache_dir, load_tokenizer(run.data.tokenizer))
    sampler = StepSampler(DocumentDataset(prefix), run.data.tokens_per_step, run.data.max_doc_tokens, run.data.seed)
    planner = make_planner(run.parallel, run.model, run.parallel.nprocs)
    steps = []
    for step in range(1, args.steps + 1):
        pieces = sampler.next_pieces()
        tokens = sampler.read(pieces)
        text = planner([p.length for p in pieces]).to_json()
        state = sampler.state_dict()
        steps.append({"step": step, "pieces": len(pieces), "tokens": sum(p.length for p in pieces),
                      "tokens_payload_bytes": len(pickle.dumps(("step", text, tokens, state))),
                      "piece_ids_payload_bytes": len(pickle.dumps(("step", text, pieces_array(pieces), state)))})
    summary = {key: statistics.mean(s[key] for s in steps)
               for key in ("tokens", "pieces", "tokens_payload_bytes", "piece_ids_payload_bytes")}
    record = {"command": "longctx bench broadcast " + " ".join(argv), "tokens_per_step": run.data.tokens_per_step,
              "world_size": run.parallel.nprocs, "mean_per_step": summary, "steps": steps,
              "machine": {"platform": platform.platform(), "python": platform.python_version()},
              "versions": {p: metadata.version(p) for p in ("longctx", "torch", "numpy")}}
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "broadcast_bytes.json").write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    return 0
