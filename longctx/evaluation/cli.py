"""`longctx eval [RUN_DIR] [--hf DIR] [--data PREFIX] ...`: loss by position bucket on held-out documents.

The model: a run's latest complete checkpoint (or ``--checkpoint``), with the
shape from the run's ``config.yaml``; or ``--hf DIR``, a Hugging Face
directory (to compare a base model with its extension).
The documents: the held-out split (:func:`longctx.data.mixture.heldout_documents`,
the run's ``data.heldout_fraction``) of every dataset the run trained on, or
of ``--data PREFIX``; the training sampler never draws them. They are taken
in id order, at least ``--min-length`` tokens long, at most
``--max-documents`` of them, each cut to ``--max-tokens``.

Prints the table, writes ``--json`` and logs ``eval/loss_<bucket>`` and
``eval/targets_<bucket>`` to the run's tracker in ``RUN_DIR/eval`` at the
checkpoint's step. Exit codes: 0 done, 2 bad arguments.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

RUN_CONFIG = "config.yaml"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="longctx eval", description="next-token loss by position bucket on held-out documents")
    parser.add_argument("run_dir", nargs="?", help="a `longctx train` output directory (its config.yaml and checkpoints)")
    parser.add_argument("--checkpoint", help="a checkpoints/step_<N> directory (default: the run's latest complete one)")
    parser.add_argument("--hf", help="evaluate this Hugging Face model directory instead of a checkpoint")
    parser.add_argument("--data", help="dataset prefix to take held-out documents from (default: the run's datasets)")
    parser.add_argument("--heldout-fraction", type=float, help="held-out fraction (default: the run's data.heldout_fraction)")
    parser.add_argument("--buckets", help="comma-separated bucket starts after 0 (default: 1024,4096,16384,... up to the longest)")
    parser.add_argument("--max-documents", type=int, default=64, help="evaluate at most this many documents (default 64)")
    parser.add_argument("--min-length", type=int, default=2, help="skip held-out documents shorter than this (tokens)")
    parser.add_argument("--max-tokens", type=int, help="cut documents to their first N tokens (default: whole)")
    parser.add_argument("--json", help="write the result as JSON to this file")
    parser.add_argument("--no-tracker", action="store_true", help="do not log to the run's tracker")
    return parser


@dataclass
class EvalSetup:
    """What `main` evaluates: the model, where it came from, and the documents."""

    model: object
    weights: str
    step: int
    prefixes: list[str]
    documents: list[np.ndarray]
    #: (dataset prefix, document index) of each evaluated document
    document_ids: list[tuple[str, int]]


def _fail(message: str) -> int:
    print(f"longctx eval: {message}", file=sys.stderr)
    return 2


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    problem = _argument_problem(args)
    if problem:
        return _fail(problem)
    from longctx.model import ModelConfigError
    from longctx.runtime.config import ConfigError

    try:
        run = _run_config(Path(args.run_dir)) if args.run_dir else None
        setup = _setup(args, run)
    except (ConfigError, ModelConfigError, OSError, ValueError) as error:
        return _fail(str(error))
    from longctx.evaluation.position_loss import bucket_edges, format_table, loss_by_position

    longest = max(len(d) if args.max_tokens is None else min(len(d), args.max_tokens) for d in setup.documents)
    edges = [0, *(int(b) for b in args.buckets.split(","))] if args.buckets else bucket_edges(longest)
    try:
        buckets = loss_by_position(setup.model, setup.documents, edges, args.max_tokens)
    except ValueError as error:
        return _fail(str(error))
    print(f"longctx eval: {setup.weights} (step {setup.step}) on {len(setup.documents)} held-out documents "
          f"of {', '.join(setup.prefixes)}")
    print(format_table(buckets))
    result = {"weights": setup.weights, "step": setup.step, "datasets": setup.prefixes,
              "documents": [{"dataset": prefix, "index": index} for prefix, index in setup.document_ids],
              "max_tokens": args.max_tokens,
              "buckets": [bucket.as_dict() for bucket in buckets]}
    if args.json:
        _write_json(args.json, result)
    if run is not None and not args.no_tracker:
        _log(run, Path(args.run_dir), buckets, setup.step)
    return 0


def _argument_problem(args: argparse.Namespace) -> str | None:
    if not args.run_dir and not (args.hf and args.data):
        return "give a run directory, or both --hf DIR and --data PREFIX"
    if args.run_dir and not (Path(args.run_dir) / RUN_CONFIG).is_file():
        return f"{args.run_dir!r} has no {RUN_CONFIG}; give a `longctx train` output directory"
    if args.hf and args.checkpoint:
        return "--hf and --checkpoint both name the weights; give one"
    for name in ("max_documents", "min_length", "max_tokens"):
        value = getattr(args, name)
        if value is not None and value < (2 if name != "max_documents" else 1):
            return f"--{name.replace('_', '-')}={value} is too small"
    if args.buckets:
        try:
            starts = [int(b) for b in args.buckets.split(",")]
        except ValueError:
            return f"--buckets={args.buckets!r} must be comma-separated integers, e.g. 1024,4096,16384"
        if any(b <= a for a, b in zip([0, *starts], starts)):
            return f"--buckets={args.buckets!r} must be increasing positive integers"
    return None


def _run_config(run_dir: Path):
    """The run's validated RunConfig; the model shape in config.yaml is already resolved (hf_path dropped)."""
    import yaml

    from longctx.runtime.config import to_run_config

    values = yaml.safe_load((run_dir / RUN_CONFIG).read_text())
    values.setdefault("model", {})["hf_path"] = None
    return to_run_config(values)


def _setup(args: argparse.Namespace, run) -> EvalSetup:
    from longctx.data.dataset import DocumentDataset
    from longctx.data.mixture import heldout_documents
    from longctx.model import Decoder, load_hf

    if args.hf:
        model, weights, step = load_hf(args.hf), str(args.hf), 0
    else:
        from longctx.runtime.checkpoint_files import complete_checkpoints
        from longctx.runtime.hf_convert import checkpoint_model_state

        checkpoint = args.checkpoint
        if checkpoint is None:
            complete = complete_checkpoints(Path(args.run_dir))
            if not complete:
                raise FileNotFoundError(f"{args.run_dir} has no complete checkpoint; train it first or pass --hf DIR")
            checkpoint = complete[0][1]
        model = Decoder(run.model)
        model.load_state_dict({k: v.float() for k, v in checkpoint_model_state(checkpoint).items()}, strict=True)
        weights, step = str(checkpoint), _step_of(Path(checkpoint))
    fraction = args.heldout_fraction if args.heldout_fraction is not None else (
        run.data.heldout_fraction if run is not None else 0.0)
    if not 0 < fraction < 1:
        raise ValueError(f"held-out fraction={fraction}: the run held out no documents (data.heldout_fraction=0), so "
                         "every document may have been trained on; train with data.heldout_fraction>0, or pass "
                         "--data with a dataset the run never saw and --heldout-fraction")
    prefixes = [args.data] if args.data else _run_prefixes(run)
    documents: list[np.ndarray] = []
    document_ids: list[tuple[str, int]] = []
    for prefix in prefixes:
        dataset = DocumentDataset(prefix)
        for index in heldout_documents(len(dataset), fraction):
            if len(documents) < args.max_documents and dataset.lengths[index] >= args.min_length:
                documents.append(dataset[int(index)])
                document_ids.append((prefix, int(index)))
    if not documents:
        raise ValueError(f"no held-out document of {prefixes} has >= {args.min_length} tokens; lower --min-length "
                         "or raise --heldout-fraction")
    if max(int(d.max()) for d in documents) >= model.config.vocab_size:
        raise ValueError(f"the documents hold token ids >= the model's vocab_size={model.config.vocab_size}; "
                         "evaluate with data tokenized by the model's tokenizer")
    return EvalSetup(model, weights, step, prefixes, documents, document_ids)


def _run_prefixes(run) -> list[str]:
    from longctx.runtime.data_setup import source_specs

    return list(dict.fromkeys(spec.prefix for spec in source_specs(run)))


def _step_of(checkpoint: Path) -> int:
    digits = checkpoint.name.rpartition("_")[2]
    return int(digits) if digits.isdigit() else 0


def _write_json(path: str, result: dict) -> None:
    """Write then rename, so a reader never sees half a file."""
    temporary = f"{path}.tmp-{os.getpid()}"
    Path(temporary).write_text(json.dumps(result, indent=2) + "\n")
    os.replace(temporary, path)


def _log(run, run_dir: Path, buckets, step: int) -> None:
    """``eval/loss_<bucket>`` and ``eval/targets_<bucket>`` into the run's tracker kind, under ``RUN_DIR/eval``."""
    from longctx.runtime.config import run_config_dict
    from longctx.tracking import make_tracker

    metrics = {}
    for bucket in buckets:
        if bucket.targets:
            metrics[f"eval/loss_{bucket.label}"] = bucket.loss
            metrics[f"eval/targets_{bucket.label}"] = float(bucket.targets)
    tracker = make_tracker(run.tracker.kind, output_dir=str(run_dir / "eval"), run_name=f"{run.tracker.run_name}-eval",
                           config=run_config_dict(run), mode=run.tracker.mode)
    try:
        tracker.log(metrics, step)
    finally:
        tracker.finish()
