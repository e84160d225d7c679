"""Tokenizers: a byte-level one that needs nothing, and local Hugging Face ones.

Every tokenizer here offers the same small surface, which is all that ingest
and the model need:

- ``name``: a short string that identifies the vocabulary (used in cache paths),
- ``encode(text) -> list[int]`` without any special tokens,
- ``decode(ids) -> str``,
- ``vocab_size``: number of token ids (the model's embedding rows must be >= this),
- ``eod_id``: the end-of-document id that ingest appends to every document.

Nothing is ever downloaded: a Hugging Face tokenizer must already be on disk
(a directory, or a name present in the local HF cache).
"""
from __future__ import annotations

from typing import Any, Protocol, Sequence


class Tokenizer(Protocol):
    """What ingest and the trainer need from a tokenizer."""

    name: str
    vocab_size: int
    eod_id: int

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: Sequence[int]) -> str: ...


class ByteTokenizer:
    """UTF-8 bytes as tokens: ids 0..255 are the bytes, id 256 is end-of-document.

    Lossless for any text, no vocabulary file, no download. ``vocab_size`` is 257.
    """

    name = "byte"
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
    """Adapter giving a local ``transformers`` tokenizer the :class:`Tokenizer` surface.

    The end-of-document id is the tokenizer's EOS token.
    """

    def __init__(self, name: str, hf_tokenizer: Any) -> None:
        if hf_tokenizer.eos_token_id is None:
            raise ValueError(
                f"load_tokenizer: tokenizer {name!r} has no eos_token, which longctx uses as the "
                "end-of-document token; choose a tokenizer that defines one, or use 'byte'"
            )
        self.name = name.rstrip("/").replace("\\", "/").split("/")[-1]
        self.eod_id = int(hf_tokenizer.eos_token_id)
        self.vocab_size = len(hf_tokenizer)
        self._hf = hf_tokenizer

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` without BOS/EOS or other special tokens (any length: documents are split later)."""
        return list(self._hf.encode(text, add_special_tokens=False, verbose=False))

    def decode(self, ids: Sequence[int]) -> str:
        """Text of ``ids`` with special tokens dropped."""
        return self._hf.decode([int(i) for i in ids], skip_special_tokens=True)

    def __repr__(self) -> str:
        return f"HuggingFaceTokenizer({self.name!r}, vocab_size={self.vocab_size})"


def load_tokenizer(name: str) -> Tokenizer:
    """Return the tokenizer called ``name``.

    ``"byte"`` gives :class:`ByteTokenizer`. Anything else is a Hugging Face
    tokenizer loaded with ``local_files_only=True`` from a local directory or
    the local HF cache; ``transformers`` is imported only here.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"load_tokenizer: name={name!r} must be 'byte' or a local Hugging Face tokenizer path")
    if name == "byte":
        return ByteTokenizer()
    try:
        import transformers
    except ImportError as error:
        raise ImportError(
            f"load_tokenizer: tokenizer {name!r} is not 'byte', so it needs the Hugging Face "
            "'transformers' package, which is not installed; `pip install transformers`, "
            "or use the tokenizer 'byte'"
        ) from error
    try:
        hf_tokenizer = transformers.AutoTokenizer.from_pretrained(name, local_files_only=True)
    except (OSError, ValueError) as error:
        raise FileNotFoundError(
            f"load_tokenizer: tokenizer {name!r} is not available locally (downloads are disabled); "
            "pass a directory holding tokenizer files (tokenizer.json / tokenizer_config.json) "
            f"or a name already in the local Hugging Face cache, or use 'byte' ({error})"
        ) from error
    return HuggingFaceTokenizer(name, hf_tokenizer)
