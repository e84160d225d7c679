"""`longctx data ingest FILES... --output PREFIX [--tokenizer NAME] [--workers N]`: build a dataset.

Tokenizes text files (one document each) and ``.jsonl`` files (one document
per line, field ``"text"``) into a megatron-core IndexedDataset
``PREFIX.bin/.idx`` with parallel processes and a progress bar. The output is
the same for any ``--workers``. Exit codes: 0 done, 2 bad arguments or input.
"""
from __future__ import annotations

import argparse
import os
import sys
import time


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="longctx data", description="data tools")
    commands = parser.add_subparsers(dest="command", required=True)
    ingest = commands.add_parser("ingest", help="tokenize text/.jsonl files into a megatron-core .bin/.idx dataset")
    ingest.add_argument("inputs", nargs="+", help="text files (one document each) and .jsonl files ({\"text\": ...} per line)")
    ingest.add_argument("--output", required=True, help="dataset prefix: writes PREFIX.bin and PREFIX.idx")
    ingest.add_argument("--tokenizer", default="byte",
                        help="'byte', 'bpe[-N]' (trained on the embedded corpus) or a local HF tokenizer directory")
    ingest.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="tokenizing processes (default: all cores)")
    ingest.add_argument("--shard-mb", type=float, default=4.0, help="input megabytes per unit of work")
    ingest.add_argument("--cache-dir", default=None, help="cache of the trained 'bpe' tokenizer (default ~/.cache/longctx)")
    ingest.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    from longctx.data.ingest import ingest
    from longctx.data.tokenizers import load_tokenizer

    started = time.perf_counter()
    try:
        tokenizer = load_tokenizer(args.tokenizer, cache_dir=args.cache_dir)
        prefix = ingest(args.inputs, args.output, tokenizer, workers=args.workers, progress=not args.no_progress,
                        shard_bytes=max(1, int(args.shard_mb * (1 << 20))))
    except (OSError, ValueError, TypeError) as error:
        print(f"longctx data ingest: {error}", file=sys.stderr)
        return 2
    from longctx.data.dataset import DocumentDataset

    dataset = DocumentDataset(prefix)
    print(f"longctx data ingest: {len(dataset)} documents, {int(dataset.lengths.sum())} tokens "
          f"(tokenizer {tokenizer.name}, vocab {tokenizer.vocab_size}) -> {prefix}.bin/.idx "
          f"in {time.perf_counter() - started:.1f} s with {args.workers} workers")
    return 0
