"""Ingest: text files and .jsonl into a megatron-core IndexedDataset (.bin/.idx).

One document becomes one megatron sequence (and one megatron document): its
token ids followed by the tokenizer's end-of-document id. Token ids are stored
in the smallest dtype megatron-core picks for the vocabulary (uint16 for the
byte tokenizer).

The dataset is written under temporary names and renamed into place, ``.bin``
first and ``.idx`` last, so a reader that finds ``<prefix>.idx`` finds a
complete dataset, and a failure (bad input, full disk) leaves nothing behind.
"""
from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from longctx.data.megatron_format import indexed_dataset_module
from longctx.data.tokenizers import Tokenizer


def ingest(inputs: list[str], output_prefix: str, tokenizer: Tokenizer) -> str:
    """Tokenize ``inputs`` into ``<output_prefix>.bin`` / ``<output_prefix>.idx``; return the prefix.

    ``inputs``: paths of text files (each file is one document, UTF-8) or of
    ``.jsonl`` files (one JSON object per line with a string field ``"text"``;
    blank lines are skipped). Empty documents are skipped. An existing dataset
    at ``output_prefix`` is replaced.
    """
    paths = _checked_inputs(inputs)
    megatron = indexed_dataset_module()

    os.makedirs(os.path.dirname(os.path.abspath(output_prefix)), exist_ok=True)
    temp_prefix = f"{output_prefix}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    dtype = megatron.DType.optimal_dtype(tokenizer.vocab_size)
    try:
        builder = megatron.IndexedDatasetBuilder(temp_prefix + ".bin", dtype=dtype)
        documents = 0
        for source, text in _documents(paths):
            ids = _document_ids(tokenizer, text, source)
            if ids is None:
                continue
            builder.add_item(torch.from_numpy(ids))
            builder.end_document()
            documents += 1
        builder.finalize(temp_prefix + ".idx")
        if documents == 0:
            raise ValueError(
                f"ingest: inputs={list(inputs)!r} hold no non-empty document; "
                "give text files with content or .jsonl lines with a non-empty \"text\""
            )
        os.replace(temp_prefix + ".bin", output_prefix + ".bin")
        os.replace(temp_prefix + ".idx", output_prefix + ".idx")
    finally:
        for suffix in (".bin", ".idx"):
            if os.path.exists(temp_prefix + suffix):
                os.remove(temp_prefix + suffix)
    return output_prefix


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


def _documents(paths: list[Path]) -> Iterator[tuple[str, str]]:
    """Yield ``(source, text)`` per document; ``source`` names file (and line) for errors."""
    for path in paths:
        if path.suffix == ".jsonl":
            yield from _jsonl_documents(path)
        else:
            yield str(path), _read_text(path)


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"ingest: {str(path)!r} is not valid UTF-8 ({error}); convert it to UTF-8") from error


def _jsonl_documents(path: Path) -> Iterator[tuple[str, str]]:
    for number, line in enumerate(_read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        source = f"{path}:{number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(f"ingest: {source} is not valid JSON ({error}); each line must be one JSON object") from error
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            found = sorted(record) if isinstance(record, dict) else type(record).__name__
            raise ValueError(
                f"ingest: {source} has no string field \"text\" (found {found}); "
                "each .jsonl line must be an object like {\"text\": \"...\"}"
            )
        yield source, record["text"]


def _document_ids(tokenizer: Tokenizer, text: str, source: str) -> np.ndarray | None:
    """Token ids of one document with end-of-document appended, or None if it is empty."""
    if not text:
        return None
    ids = np.asarray(tokenizer.encode(text) + [tokenizer.eod_id], dtype=np.int64)
    if ids.min() < 0 or ids.max() >= tokenizer.vocab_size:
        raise ValueError(
            f"ingest: tokenizer {tokenizer.name!r} produced ids in [{ids.min()}, {ids.max()}] for {source}, "
            f"outside its vocab_size={tokenizer.vocab_size}; fix the tokenizer's vocab_size"
        )
    return ids
