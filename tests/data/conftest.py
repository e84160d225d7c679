"""The default corpus, built once per test session by two threads at once into a fresh cache."""
from __future__ import annotations

import threading
from dataclasses import dataclass

import pytest

import longctx.data.corpus as corpus_module
from longctx.data import default_corpus


@dataclass
class CorpusBuild:
    prefixes: list[str]
    ingest_calls: int
    cache_dir: str


@pytest.fixture(scope="session")
def built_corpus(tmp_path_factory) -> CorpusBuild:
    """Two concurrent default_corpus calls on an empty cache; counts the real ingest calls."""
    cache_dir = str(tmp_path_factory.mktemp("corpus_cache"))
    calls = []
    real_ingest = corpus_module.ingest

    def counting_ingest(*args, **kwargs):
        calls.append(args)
        return real_ingest(*args, **kwargs)

    prefixes: list[str] = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(corpus_module, "ingest", counting_ingest)
        threads = [threading.Thread(target=lambda: prefixes.append(default_corpus(cache_dir))) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        prefixes.append(default_corpus(cache_dir))
    return CorpusBuild(prefixes, len(calls), cache_dir)
