"""The default corpus: the stdlib sources, long-tailed, built once and reused, safe to build concurrently."""
from __future__ import annotations

import platform
from pathlib import Path

import numpy as np

from longctx.data import ByteTokenizer, DocumentDataset, stdlib_source_files


def test_concurrent_builds_ingest_once_and_later_calls_reuse_the_cache(built_corpus):
    expected = str(Path(built_corpus.cache_dir) / f"corpus-{platform.python_version()}-byte")
    assert built_corpus.prefixes == [expected] * 3
    assert built_corpus.ingest_calls == 1
    leftovers = sorted(p.name for p in Path(built_corpus.cache_dir).iterdir() if ".tmp-" in p.name)
    assert leftovers == []


def test_corpus_documents_are_the_stdlib_files_with_end_of_document(built_corpus):
    dataset = DocumentDataset(built_corpus.prefixes[0])
    files = stdlib_source_files()
    assert len(dataset) == len(files) > 500
    assert not any("/site-packages/" in f or "/test/" in f for f in files)
    tokenizer = ByteTokenizer()
    for index in (0, len(files) // 2, len(files) - 1):
        tokens = dataset[index]
        assert tokens[-1] == tokenizer.eod_id
        assert tokenizer.decode(tokens) == Path(files[index]).read_text(encoding="utf-8")


def test_corpus_lengths_are_long_tailed(built_corpus):
    lengths = DocumentDataset(built_corpus.prefixes[0]).lengths
    median, p99, longest = np.median(lengths), np.percentile(lengths, 99), lengths.max()
    assert longest / median > 50 and p99 / median > 8, (median, p99, longest)
    assert lengths.sum() > 5_000_000
    assert lengths.mean() > 1.5 * median, "a long tail pulls the mean well above the median"
