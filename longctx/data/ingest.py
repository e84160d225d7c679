"""Ingest: text files and .jsonl into a megatron-core IndexedDataset (.bin/.idx), in parallel processes.

One document becomes one megatron sequence (and one megatron document): the
tokenizer's beginning-of-document id if it has one, the document's token ids,
and its end-of-document id. Token ids are stored in the smallest dtype
megatron-core picks for the vocabulary (uint16 below 65500 ids).

The inputs are cut into shards (:mod:`longctx.data.shards`) that ``workers``
processes tokenize; the parent appends them in shard order as they arrive,
so the output is identical for any number of workers. The dataset is written
under temporary names and renamed into place, ``.bin`` first and ``.idx``
last, so a reader that finds ``<prefix>.idx`` finds a complete dataset, and a
failure (bad input, full disk) leaves nothing behind.
"""
from __future__ import annotations

import multiprocessing
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Iterator

import numpy as np
from tqdm import tqdm

from longctx.data.megatron_format import indexed_dataset_module
from longctx.data.shards import DEFAULT_SHARD_BYTES, Shard, TokenizedShard, plan_shards, tokenize_shard
from longctx.data.tokenizers import Tokenizer


def ingest(inputs: list[str], output_prefix: str, tokenizer: Tokenizer, workers: int = 1,
           progress: bool = False, shard_bytes: int = DEFAULT_SHARD_BYTES) -> str:
    """Tokenize ``inputs`` into ``<output_prefix>.bin`` / ``<output_prefix>.idx``; return the prefix.

    ``inputs``: paths of text files (each file is one document, UTF-8) or of
    ``.jsonl`` files (one JSON object per line with a string field ``"text"``;
    blank lines are skipped). Empty documents are skipped. An existing dataset
    at ``output_prefix`` is replaced. ``workers``: tokenizing processes (1: in
    this process). ``progress``: a tqdm bar over the input bytes.
    ``shard_bytes``: input bytes per unit of work.
    """
    paths = _checked_inputs(inputs)
    for field, value in (("workers", workers), ("shard_bytes", shard_bytes)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"ingest: {field}={value!r} must be an integer >= 1")
    megatron = indexed_dataset_module()
    dtype = megatron.DType.optimal_dtype(tokenizer.vocab_size)  # a numpy scalar type (megatron needs the type)
    shards = plan_shards(paths, shard_bytes)

    os.makedirs(os.path.dirname(os.path.abspath(output_prefix)), exist_ok=True)
    temp_prefix = f"{output_prefix}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    scratch = tempfile.mkdtemp(prefix=os.path.basename(temp_prefix) + "-shards-",
                               dir=os.path.dirname(os.path.abspath(output_prefix)))
    bar = tqdm(total=sum(shard.size for shard in shards), unit="B", unit_scale=True, desc="ingest",
               disable=not progress, dynamic_ncols=True)
    try:
        builder = megatron.IndexedDatasetBuilder(temp_prefix + ".bin", dtype=dtype)
        documents = 0
        for tokenized in _tokenized_in_order(shards, tokenizer, dtype, scratch, workers):
            documents += _append(builder, tokenized, dtype)
            bar.update(tokenized.input_bytes)
        builder.finalize(temp_prefix + ".idx")
        if documents == 0:
            raise ValueError(
                f"ingest: inputs={list(inputs)!r} hold no non-empty document; "
                "give text files with content or .jsonl lines with a non-empty \"text\""
            )
        os.replace(temp_prefix + ".bin", output_prefix + ".bin")
        os.replace(temp_prefix + ".idx", output_prefix + ".idx")
    finally:
        bar.close()
        shutil.rmtree(scratch, ignore_errors=True)
        for suffix in (".bin", ".idx"):
            if os.path.exists(temp_prefix + suffix):
                os.remove(temp_prefix + suffix)
    return output_prefix


def _tokenized_in_order(shards: list[Shard], tokenizer: Tokenizer, dtype: type, scratch: str,
                        workers: int) -> Iterator[TokenizedShard]:
    """Tokenized shards in shard order: here for one worker, else from a spawn pool (no fork of torch state)."""
    if workers == 1 or len(shards) == 1:
        for shard in shards:
            yield tokenize_shard(shard, tokenizer, dtype, scratch)
        return
    context = multiprocessing.get_context("spawn")
    with context.Pool(min(workers, len(shards)), initializer=_init_worker, initargs=(tokenizer, dtype, scratch)) as pool:
        yield from pool.imap(_tokenize_in_worker, shards)


_WORKER: dict = {}


def _init_worker(tokenizer: Tokenizer, dtype: type, scratch: str) -> None:
    _WORKER.update(tokenizer=tokenizer, dtype=dtype, scratch=scratch)


def _tokenize_in_worker(shard: Shard) -> TokenizedShard:
    return tokenize_shard(shard, _WORKER["tokenizer"], _WORKER["dtype"], _WORKER["scratch"])


def _append(builder, tokenized: TokenizedShard, dtype: type) -> int:
    """Append a shard's documents to the megatron builder, one megatron document each; returns their number."""
    tokens = np.fromfile(tokenized.tokens_path, dtype=dtype)
    os.remove(tokenized.tokens_path)
    offsets = np.concatenate([[0], np.cumsum(tokenized.lengths)])
    for start, stop in zip(offsets[:-1], offsets[1:]):
        builder.add_document(tokens[start:stop], [int(stop - start)])
    return len(tokenized.lengths)


def _checked_inputs(inputs: list[str]) -> list[Path]:
    """Validate the input list before anything is written."""
    if isinstance(inputs, (str, os.PathLike)):
        raise TypeError(f"ingest: inputs={inputs!r} must be a list of paths, not one path; wrap it in a list")
    if not inputs:
        raise ValueError("ingest: inputs=[] is empty; give at least one text or .jsonl file")
    paths = [Path(p) for p in inputs]
    for path in paths:
        if not path.is_file():
            what = "is a directory" if path.is_dir() else "does not exist"
            raise FileNotFoundError(f"ingest: input {str(path)!r} {what}; give paths of text or .jsonl files")
    return paths
