"""Ingest work units: the input files cut into shards of about ``shard_bytes`` bytes, and their tokenization.

A shard is a list of byte ranges: whole text files (one document each,
consecutive small files grouped together) or line-aligned ranges of a
``.jsonl`` file (one document per line). The cut depends only on the inputs
and ``shard_bytes``, never on the number of worker processes, and shards are
written in their order, so the dataset is the same byte for byte whatever the
parallelism. Tokenizing a shard needs no torch and no megatron-core, so worker
processes start fast.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from longctx.data.tokenizers import Tokenizer

#: target size of one shard (the unit of work of one worker task)
DEFAULT_SHARD_BYTES = 4 << 20


@dataclass(frozen=True)
class Part:
    """Bytes ``[start, stop)`` of ``path``; for ``.jsonl`` its first line is number ``first_line`` (1-based)."""

    path: str
    start: int
    stop: int
    first_line: int = 1

    @property
    def is_jsonl(self) -> bool:
        return self.path.endswith(".jsonl")


@dataclass(frozen=True)
class Shard:
    index: int
    parts: tuple[Part, ...]

    @property
    def size(self) -> int:
        """Bytes of input this shard covers (for the progress bar)."""
        return sum(part.stop - part.start for part in self.parts)


def plan_shards(paths: list[Path], shard_bytes: int = DEFAULT_SHARD_BYTES) -> list[Shard]:
    """Cut ``paths`` (in order) into shards of about ``shard_bytes`` bytes; documents keep their order."""
    parts: list[Part] = []
    for path in paths:
        size = path.stat().st_size
        parts.extend(_jsonl_parts(path, size, shard_bytes) if path.suffix == ".jsonl" else [Part(str(path), 0, size)])
    shards, current, current_bytes = [], [], 0
    for part in parts:
        current.append(part)
        current_bytes += part.stop - part.start
        if current_bytes >= shard_bytes:
            shards.append(Shard(len(shards), tuple(current)))
            current, current_bytes = [], 0
    if current:
        shards.append(Shard(len(shards), tuple(current)))
    return shards


def _jsonl_parts(path: Path, size: int, shard_bytes: int) -> Iterator[Part]:
    """Line-aligned ranges of about ``shard_bytes`` bytes, each with the number of its first line."""
    start, line = 0, 1
    with open(path, "rb") as handle:
        while start < size:
            handle.seek(min(start + shard_bytes, size))
            handle.readline()  # move on to the end of the line the cut fell into
            stop = min(handle.tell(), size) if start + shard_bytes < size else size
            handle.seek(start)
            yield Part(str(path), start, stop, line)
            line += handle.read(stop - start).count(b"\n")
            start = stop


@dataclass(frozen=True)
class TokenizedShard:
    """One shard's documents: their tokens concatenated into ``tokens_path`` (raw ``dtype``), and their lengths."""

    index: int
    tokens_path: str
    lengths: np.ndarray
    input_bytes: int


def tokenize_shard(shard: Shard, tokenizer: Tokenizer, dtype: type, directory: str) -> TokenizedShard:
    """Tokenize every document of ``shard`` into ``<directory>/shard-<index>.tokens``; empty documents are skipped."""
    tokens_path = os.path.join(directory, f"shard-{shard.index:08d}.tokens")
    lengths = []
    with open(tokens_path, "wb") as out:
        for source, text in _shard_documents(shard):
            ids = document_ids(tokenizer, text, source)
            if ids is not None:
                out.write(ids.astype(dtype).tobytes())
                lengths.append(len(ids))
    return TokenizedShard(shard.index, tokens_path, np.asarray(lengths, dtype=np.int64), shard.size)


def document_ids(tokenizer: Tokenizer, text: str, source: str) -> np.ndarray | None:
    """``[bos] + ids + [eod]`` of one document (no bos when the tokenizer has none), or None if it is empty."""
    if not text:
        return None
    bos = [] if tokenizer.bos_id is None else [tokenizer.bos_id]
    ids = np.asarray(bos + tokenizer.encode(text) + [tokenizer.eod_id], dtype=np.int64)
    if ids.min() < 0 or ids.max() >= tokenizer.vocab_size:
        raise ValueError(
            f"ingest: tokenizer {tokenizer.name!r} produced ids in [{ids.min()}, {ids.max()}] for {source}, "
            f"outside its vocab_size={tokenizer.vocab_size}; fix the tokenizer's vocab_size"
        )
    return ids


def _shard_documents(shard: Shard) -> Iterator[tuple[str, str]]:
    """``(source, text)`` per document; ``source`` names the file (and line) for errors."""
    for part in shard.parts:
        with open(part.path, "rb") as handle:
            handle.seek(part.start)
            data = handle.read(part.stop - part.start)
        text = _decoded(data, part)
        if part.is_jsonl:
            yield from _jsonl_documents(text, part)
        else:
            yield part.path, text


def _decoded(data: bytes, part: Part) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"ingest: {part.path!r} is not valid UTF-8 ({error}); convert it to UTF-8") from None


def _jsonl_documents(text: str, part: Part) -> Iterator[tuple[str, str]]:
    for number, line in enumerate(text.split("\n"), start=part.first_line):
        if not line.strip():
            continue
        source = f"{part.path}:{number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(f"ingest: {source} is not valid JSON ({error}); each line must be one JSON object") from None
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            found = sorted(record) if isinstance(record, dict) else type(record).__name__
            raise ValueError(
                f"ingest: {source} has no string field \"text\" (found {found}); "
                "each .jsonl line must be an object like {\"text\": \"...\"}"
            )
        yield source, record["text"]
