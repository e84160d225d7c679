"""Tokenizers: the byte tokenizer is lossless; Hugging Face ones load only from local files."""
from __future__ import annotations

import importlib.util

import pytest

from longctx.data import ByteTokenizer, load_tokenizer


def test_byte_tokenizer_round_trips_any_text_and_drops_end_of_document():
    tokenizer = load_tokenizer("byte")
    assert isinstance(tokenizer, ByteTokenizer)
    text = "def f(x):\n    return 'héllo, 世界 🐍'\n"
    ids = tokenizer.encode(text)
    assert len(ids) == len(text.encode("utf-8")) and max(ids) < 256
    assert tokenizer.decode(ids + [tokenizer.eod_id]) == text
    assert (tokenizer.vocab_size, tokenizer.eod_id, tokenizer.name) == (257, 256, "byte")


def test_non_local_hugging_face_tokenizer_is_a_clear_error_without_download():
    name = "/nonexistent/tokenizer-dir"
    if importlib.util.find_spec("transformers") is None:
        with pytest.raises(ImportError, match="needs the Hugging Face 'transformers' package"):
            load_tokenizer(name)
    else:
        with pytest.raises(FileNotFoundError, match="not available locally"):
            load_tokenizer(name)


@pytest.mark.parametrize("name", ["", None])
def test_empty_tokenizer_name_is_rejected(name):
    with pytest.raises(ValueError, match="must be 'byte' or a local Hugging Face tokenizer"):
        load_tokenizer(name)
