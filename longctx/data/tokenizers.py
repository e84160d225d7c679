"""Tokenizers: a byte-level one that needs nothing, Hugging Face ``tokenizer.json`` files, a trained BPE.

Every tokenizer here offers the same small surface, which is all that ingest
and the model need:

- ``name``: a short string that identifies the vocabulary (used in cache paths),
- ``encode(text) -> list[int]`` without any special tokens,
- ``decode(ids) -> str``,
- ``vocab_size``: number of token ids (the model's embedding rows must be >= this),
- ``bos_id``: the id ingest puts before every document, or None for none,
- ``eod_id``: the end-of-document id that ingest appends to every document.

A Hugging Face tokenizer is read with the ``tokenizers`` package from a local
directory holding ``tokenizer.json`` (and usually ``tokenizer_config.json``),
or from a repository name already in the local Hugging Face cache. Nothing is
ever downloaded.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol, Sequence

#: the file a Hugging Face "fast" tokenizer directory always holds
TOKENIZER_FILE = "tokenizer.json"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
SPECIAL_TOKENS_FILE = "special_tokens_map.json"


class Tokenizer(Protocol):
    """What ingest and the trainer need from a tokenizer."""

    name: str
    vocab_size: int
    bos_id: int | None
    eod_id: int

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: Sequence[int]) -> str: ...


class ByteTokenizer:
    """UTF-8 bytes as tokens: ids 0..255 are the bytes, id 256 is end-of-document.

    Lossless for any text, no vocabulary file, no download. ``vocab_size`` is 257;
    no beginning-of-document token.
    """

    name = "byte"
    bos_id = None
    eod_id = 256
    vocab_size = 257

    def encode(self, text: str) -> list[int]:
        """Return the UTF-8 bytes of ``text`` as ids (no end-of-document appended)."""
        return list(text.encode("utf-8"))

    def decode(self, ids: Sequence[int]) -> str:
        """Inverse of :meth:`encode`; special ids are dropped, invalid UTF-8 is replaced."""
        return bytes(int(i) for i in ids if int(i) < 256).decode("utf-8", errors="replace")

    def __repr__(self) -> str:
        return "ByteTokenizer()"


class HuggingFaceTokenizer:
    """A Hugging Face tokenizer directory read with the ``tokenizers`` package.

    Per document, ingest writes ``[bos_id] + encode(text) + [eod_id]``:

    - ``eod_id`` is the tokenizer's EOS token, from ``tokenizer_config.json``
      (``eos_token``) or ``special_tokens_map.json``; a tokenizer without one is
      an error (longctx needs a document separator).
    - ``bos_id`` is what the tokenizer's own post-processor puts in front of a
      single sequence (Llama's ``<|begin_of_text|>`` / ``<s>``), so documents
      start the way the model saw them in pre-training; None when it adds
      nothing (GPT-2, Qwen2). ``tokenizer_config.json``'s ``add_bos_token``,
      when present, overrides the post-processor.

    ``name`` is the directory's name plus a hash of ``tokenizer.json`` and the
    BOS/EOS ids, so two tokenizers that tokenize differently never share a
    cached dataset.
    """

    def __init__(self, directory: str | os.PathLike, display_name: str | None = None) -> None:
        BackendTokenizer = tokenizers_package().Tokenizer
        directory = Path(directory)
        path = directory / TOKENIZER_FILE
        data = path.read_bytes()
        self._backend = BackendTokenizer.from_str(data.decode("utf-8"))
        settings = _special_token_settings(directory)
        self.directory = str(directory)
        self.vocab_size = int(self._backend.get_vocab_size(with_added_tokens=True))
        self.eod_id = self._special_id(settings.get("eos_token"), "eos_token", directory)
        self.bos_id = self._bos_id(settings, directory)
        digest = hashlib.sha256(data + f"\0bos={self.bos_id}\0eod={self.eod_id}".encode()).hexdigest()[:10]
        self.name = f"{display_name or directory.name}-{digest}"

    def _special_id(self, token: str | None, field: str, directory: Path) -> int:
        if token is None:
            raise ValueError(
                f"load_tokenizer: {str(directory)!r} defines no {field} (looked in {TOKENIZER_CONFIG_FILE} and "
                f"{SPECIAL_TOKENS_FILE}); longctx ends every document with the EOS token: add "
                f"\"{field}\" to {TOKENIZER_CONFIG_FILE}, or use the tokenizer 'byte' or 'bpe'"
            )
        token_id = self._backend.token_to_id(token)
        if token_id is None:
            raise ValueError(
                f"load_tokenizer: {field}={token!r} of {str(directory)!r} is not in its vocabulary "
                f"({TOKENIZER_FILE}); fix {TOKENIZER_CONFIG_FILE}"
            )
        return int(token_id)

    def _bos_id(self, settings: dict[str, Any], directory: Path) -> int | None:
        add_bos = settings.get("add_bos_token")
        if add_bos is False:
            return None
        if add_bos is True:
            return self._special_id(settings.get("bos_token"), "bos_token", directory)
        plain = self._backend.encode("a", add_special_tokens=False).ids
        full = self._backend.encode("a", add_special_tokens=True).ids
        prefix = full[: len(full) - len(plain)] if full[len(full) - len(plain):] == plain else []
        return int(prefix[-1]) if prefix else None

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` without BOS/EOS or other special tokens (any length: documents are split later)."""
        return self._backend.encode(text, add_special_tokens=False).ids

    def decode(self, ids: Sequence[int]) -> str:
        """Text of ``ids`` with special tokens dropped."""
        return self._backend.decode([int(i) for i in ids], skip_special_tokens=True)

    def __repr__(self) -> str:
        return f"HuggingFaceTokenizer({self.directory!r}, vocab_size={self.vocab_size})"


def tokenizers_package() -> ModuleType:
    """The Hugging Face ``tokenizers`` package, or an ImportError that says how to install it."""
    try:
        import tokenizers
    except ImportError as error:
        raise ImportError("the tokenizer needs the Hugging Face 'tokenizers' package, which is not installed; "
                          "`pip install longctx[hf]` (or `pip install tokenizers`), or use the tokenizer 'byte'") from error
    return tokenizers


def _special_token_settings(directory: Path) -> dict[str, Any]:
    """``bos_token`` / ``eos_token`` (as strings) and ``add_bos_token`` from the directory's json files."""
    settings: dict[str, Any] = {}
    for filename in (SPECIAL_TOKENS_FILE, TOKENIZER_CONFIG_FILE):  # the tokenizer config wins
        path = directory / filename
        if not path.is_file():
            continue
        values = json.loads(path.read_text(encoding="utf-8"))
        for key in ("bos_token", "eos_token"):
            token = values.get(key)
            if isinstance(token, dict):  # older transformers write {"content": ..., "lstrip": ...}
                token = token.get("content")
            if key in values:
                settings[key] = token
        if isinstance(values.get("add_bos_token"), bool):
            settings["add_bos_token"] = values["add_bos_token"]
    return settings


def _local_tokenizer_directory(name: str) -> Path | None:
    """``name`` as a directory with ``tokenizer.json``: a path, or a repository in the local HF cache."""
    path = Path(name).expanduser()
    if (path / TOKENIZER_FILE).is_file():
        return path
    if path.exists() or name.startswith((".", "/", "~")):
        return None
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    try:
        cached = try_to_load_from_cache(name, TOKENIZER_FILE)
    except ValueError:  # not a valid repository id
        return None
    return Path(cached).parent if isinstance(cached, str) else None


def load_tokenizer(name: str, cache_dir: str | None = None) -> Tokenizer:
    """Return the tokenizer called ``name``.

    - ``"byte"``: :class:`ByteTokenizer`.
    - ``"bpe"`` or ``"bpe-<vocab size>"``: the byte-level BPE trained on the
      embedded corpus (:mod:`longctx.data.bpe`), trained on first use into
      ``cache_dir`` (default ``~/.cache/longctx``) and reused.
    - anything else: a local Hugging Face tokenizer directory (``tokenizer.json``),
      or a repository name already in the local Hugging Face cache.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(
            f"load_tokenizer: name={name!r} must be 'byte', 'bpe[-<vocab size>]' or a local Hugging Face tokenizer path"
        )
    if name == "byte":
        return ByteTokenizer()
    from longctx.data import bpe

    vocab_size = bpe.parse_bpe_name(name)
    if vocab_size is not None:
        return HuggingFaceTokenizer(bpe.trained_bpe(vocab_size, cache_dir), display_name=name)
    directory = _local_tokenizer_directory(name)
    if directory is None:
        raise FileNotFoundError(
            f"load_tokenizer: tokenizer {name!r} is not available locally (downloads are disabled); "
            f"pass a directory holding {TOKENIZER_FILE} (and {TOKENIZER_CONFIG_FILE}), a name already in the "
            "local Hugging Face cache, or use 'byte' or 'bpe'"
        )
    return HuggingFaceTokenizer(directory)
