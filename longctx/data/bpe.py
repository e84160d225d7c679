"""A byte-level BPE tokenizer trained on the embedded corpus at first use (no download).

``load_tokenizer("bpe")`` (or ``"bpe-<vocab size>"``) trains a GPT-2-style
byte-level BPE with the ``tokenizers`` package on the standard-library sources
of :func:`longctx.data.corpus.stdlib_source_files` and saves it as a Hugging
Face tokenizer directory (``tokenizer.json`` + ``tokenizer_config.json``), so
it loads through the same path as any other HF tokenizer and the model can be
exported with it. Training is deterministic (same Python, same ``tokenizers``
version -> the same ``tokenizer.json``) and takes ~10 s for 4096 tokens on
two cores; concurrent callers (ranks) train it once under a file lock. Id 0 is
the end-of-document token ``<|endoftext|>``; there is no BOS.
"""
from __future__ import annotations

import json
import os
import platform
import re
import shutil
import uuid
from pathlib import Path

from longctx.data.build_once import build_once
from longctx.data.corpus import cache_root, stdlib_source_files
from longctx.data.tokenizers import tokenizers_package

#: vocabulary size of plain ``"bpe"``
DEFAULT_VOCAB_SIZE = 4096
END_OF_TEXT = "<|endoftext|>"
#: 256 byte tokens + the end-of-text token: the smallest vocabulary a byte-level BPE can have
MIN_VOCAB_SIZE = 257
_NAME = re.compile(r"^bpe(?:-(\d+))?$")


def parse_bpe_name(name: str) -> int | None:
    """The vocabulary size that tokenizer name ``name`` asks for (``bpe`` / ``bpe-N``), or None if not a BPE name."""
    match = _NAME.match(name)
    if match is None:
        return None
    vocab_size = int(match.group(1)) if match.group(1) else DEFAULT_VOCAB_SIZE
    if vocab_size < MIN_VOCAB_SIZE:
        raise ValueError(f"load_tokenizer: {name!r} asks for {vocab_size} tokens; a byte-level BPE needs at least "
                         f"{MIN_VOCAB_SIZE} (256 bytes + end-of-text): use e.g. 'bpe-4096'")
    return vocab_size


def trained_bpe(vocab_size: int = DEFAULT_VOCAB_SIZE, cache_dir: str | None = None) -> Path:
    """Directory of the BPE tokenizer with ``vocab_size`` tokens, training it on first use."""
    tokenizers = tokenizers_package()
    directory = cache_root(cache_dir) / f"bpe-{vocab_size}-py{platform.python_version()}-tokenizers{tokenizers.__version__}"
    build_once(str(directory) + ".lock", directory.is_dir, lambda: _train_into(directory, vocab_size))
    return directory


def _train_into(directory: Path, vocab_size: int) -> None:
    """Train, write into a temporary directory, and rename it to ``directory`` (atomic)."""
    package = tokenizers_package()
    decoders, models, pre_tokenizers, trainers = (package.decoders, package.models, package.pre_tokenizers,
                                                  package.trainers)
    backend = package.Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[END_OF_TEXT], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    backend.train_from_iterator(_corpus_texts(), trainer)
    temporary = directory.with_name(f"{directory.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        temporary.mkdir(parents=True)
        backend.save(str(temporary / "tokenizer.json"))
        config = {"tokenizer_class": "PreTrainedTokenizerFast", "eos_token": END_OF_TEXT,
                  "add_bos_token": False, "model_max_length": 1 << 30}
        (temporary / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
        os.rename(temporary, directory)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)


def _corpus_texts():
    for path in stdlib_source_files():
        yield Path(path).read_text(encoding="utf-8", errors="replace")
