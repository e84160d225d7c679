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


def test_local_hugging_face_tokenizer_loads_offline_and_round_trips(tmp_path):
    transformers = pytest.importorskip("transformers")
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    backend = Tokenizer(models.BPE(unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<unk>", "</s>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    backend.train_from_iterator(["def train(model, data):\n    return model(data)\n"] * 20, trainer)
    transformers.PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="</s>", unk_token="<unk>").save_pretrained(tmp_path / "tok")

    tokenizer = load_tokenizer(str(tmp_path / "tok"))
    text = "def train(data):\n    return data\n"
    ids = tokenizer.encode(text)
    assert tokenizer.eod_id == backend.token_to_id("</s>") and tokenizer.eod_id not in ids
    assert tokenizer.decode(ids + [tokenizer.eod_id]) == text
    assert tokenizer.name == "tok" and tokenizer.vocab_size == backend.get_vocab_size()
