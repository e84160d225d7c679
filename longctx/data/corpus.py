"""The embedded default corpus: the running interpreter's standard-library sources.

Every Python installation carries a few hundred ``.py`` files whose lengths
are long-tailed (a median of a few KB, a tail up to ~750 KB for
``pydoc_data/topics.py``), which is the shape that makes dynamic sequence
parallelism matter, and needs no download. The corpus is tokenized once into
a cache directory and reused.
"""
from __future__ import annotations

import os
import platform
import sysconfig
from pathlib import Path

from longctx.data.build_once import build_once
from longctx.data.ingest import ingest
from longctx.data.tokenizers import ByteTokenizer, Tokenizer

#: Directories left out: installed third-party packages (not the standard
#: library) and test suites (absent from many distributions' Python builds,
#: and partly deliberately malformed), so the corpus is the same everywhere a
#: given Python version runs.
EXCLUDED_DIRECTORIES = frozenset({"site-packages", "dist-packages", "test", "tests", "idle_test"})


def stdlib_source_files() -> list[str]:
    """The non-empty standard-library ``.py`` files of this interpreter, sorted by path."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files = []
    for path in sorted(root.rglob("*.py")):
        directories = set(path.relative_to(root).parts[:-1])
        if not directories & EXCLUDED_DIRECTORIES and path.is_file() and path.stat().st_size > 0:
            files.append(str(path))
    return files


def cache_root(cache_dir: str | None = None) -> Path:
    """Where cached corpora and tokenizers live: ``cache_dir``, or ``~/.cache/longctx`` when None."""
    return Path(cache_dir if cache_dir is not None else "~/.cache/longctx").expanduser()


def default_corpus(cache_dir: str | None = None, tokenizer: Tokenizer | None = None) -> str:
    """Return the prefix of the default corpus, building it on first use.

    The dataset lives at ``<cache_dir>/corpus-<python version>-<tokenizer name>``
    (``cache_dir`` defaults to ``~/.cache/longctx``); ``tokenizer`` defaults to
    :class:`ByteTokenizer`. Processes that call this at the same time build it
    once: the builder holds an exclusive lock on ``<prefix>.lock`` and the
    others wait and then reuse the result.
    """
    tokenizer = tokenizer or ByteTokenizer()
    prefix = str(cache_root(cache_dir) / f"corpus-{platform.python_version()}-{tokenizer.name}")
    build_once(prefix + ".lock", lambda: _is_complete(prefix),
               lambda: ingest(stdlib_source_files(), prefix, tokenizer))
    return prefix


def _is_complete(prefix: str) -> bool:
    """Ingest renames ``.idx`` into place last, so its presence means the dataset is whole."""
    return os.path.isfile(prefix + ".bin") and os.path.isfile(prefix + ".idx")
