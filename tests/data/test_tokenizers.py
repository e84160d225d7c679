"""Tokenizers: byte is lossless; HF tokenizer.json directories load offline with BOS/EOS per document; the BPE trains once."""
from __future__ import annotations

import threading
from pathlib import Path

import pytest
import transformers

import longctx.data.bpe as bpe_module
from longctx.data import ByteTokenizer, DocumentDataset, HuggingFaceTokenizer, ingest, load_tokenizer
from tests.data.hf_tokenizers import write_hf_tokenizer

TEXT = "def train(data):\n    return 'héllo, 世界 🐍'\n"


def test_byte_tokenizer_round_trips_any_text_and_drops_end_of_document():
    tokenizer = load_tokenizer("byte")
    assert isinstance(tokenizer, ByteTokenizer)
    ids = tokenizer.encode(TEXT)
    assert len(ids) == len(TEXT.encode("utf-8")) and max(ids) < 256
    assert tokenizer.decode(ids + [tokenizer.eod_id]) == TEXT
    assert (tokenizer.vocab_size, tokenizer.eod_id, tokenizer.bos_id, tokenizer.name) == (257, 256, None, "byte")


def test_non_local_tokenizer_is_a_clear_error_without_download(tmp_path):
    for name in ("/nonexistent/tokenizer-dir", str(tmp_path), "no-such-org/no-such-tokenizer"):
        with pytest.raises(FileNotFoundError, match="not available locally"):
            load_tokenizer(name)


@pytest.mark.parametrize("name", ["", None])
def test_empty_tokenizer_name_is_rejected(name):
    with pytest.raises(ValueError, match="must be 'byte', 'bpe"):
        load_tokenizer(name)


def test_transformers_saved_tokenizer_loads_through_tokenizers_and_round_trips(tmp_path):
    backend_dir = write_hf_tokenizer(tmp_path / "raw", bos=None)
    fast = transformers.PreTrainedTokenizerFast(tokenizer_file=str(backend_dir / "tokenizer.json"),
                                                eos_token="</s>", unk_token="<unk>")
    fast.save_pretrained(tmp_path / "tok")

    tokenizer = load_tokenizer(str(tmp_path / "tok"))
    ids = tokenizer.encode(TEXT)
    assert ids == fast.encode(TEXT, add_special_tokens=False), "same ids as transformers"
    assert tokenizer.eod_id == fast.eos_token_id and tokenizer.eod_id not in ids and tokenizer.bos_id is None
    assert tokenizer.decode(ids + [tokenizer.eod_id]) == TEXT
    assert tokenizer.name.startswith("tok-") and tokenizer.vocab_size == len(fast)


def test_bos_comes_from_the_post_processor_and_ingest_wraps_every_document(tmp_path):
    directory = write_hf_tokenizer(tmp_path / "llama_like", config={"eos_token": {"content": "</s>"}, "bos_token": "<s>"})
    tokenizer = load_tokenizer(str(directory))
    assert tokenizer.bos_id is not None and tokenizer.bos_id != tokenizer.eod_id
    documents = ["first document", "second one, longer"]
    (tmp_path / "docs.jsonl").write_text("".join(f'{{"text": "{d}"}}\n' for d in documents))
    dataset = DocumentDataset(ingest([str(tmp_path / "docs.jsonl")], str(tmp_path / "ds"), tokenizer))
    for index, text in enumerate(documents):
        assert dataset[index].tolist() == [tokenizer.bos_id, *tokenizer.encode(text), tokenizer.eod_id]


@pytest.mark.parametrize(("config", "expect_bos"), [({"add_bos_token": False}, False), ({"add_bos_token": True}, True)])
def test_add_bos_token_in_the_config_overrides_the_post_processor(tmp_path, config, expect_bos):
    directory = write_hf_tokenizer(tmp_path / "t", post_processor_bos=not expect_bos,
                                   config={"eos_token": "</s>", "bos_token": "<s>", **config})
    tokenizer = load_tokenizer(str(directory))
    assert (tokenizer.bos_id is not None) == expect_bos


@pytest.mark.parametrize(("config", "match"), [
    (None, "defines no eos_token"),
    ({"eos_token": "<|missing|>"}, r"eos_token='<\|missing\|>' .* is not in its vocabulary"),
])
def test_tokenizer_without_a_usable_eos_is_a_clear_error(tmp_path, config, match):
    directory = write_hf_tokenizer(tmp_path / "t", eos=None, config=config)
    with pytest.raises(ValueError, match=match):
        load_tokenizer(str(directory))


def test_trained_bpe_is_built_once_under_concurrency_and_is_deterministic(tmp_path, monkeypatch):
    calls = []
    real_train = bpe_module._train_into
    monkeypatch.setattr(bpe_module, "_train_into", lambda *args: (calls.append(args), real_train(*args)))
    loaded: list[HuggingFaceTokenizer] = []
    threads = [threading.Thread(target=lambda: loaded.append(load_tokenizer("bpe-1024", str(tmp_path / "a"))))
               for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    again = load_tokenizer("bpe-1024", str(tmp_path / "b"))  # a fresh cache: trained a second time
    assert len(calls) == 2 and len(loaded) == 2
    files = [Path(t.directory, "tokenizer.json").read_bytes() for t in (*loaded, again)]
    assert files[0] == files[1] == files[2], "training must be deterministic"
    assert not [p for p in (tmp_path / "a").iterdir() if ".tmp-" in p.name]

    tokenizer = loaded[0]
    assert (tokenizer.vocab_size, tokenizer.eod_id, tokenizer.bos_id) == (1024, 0, None)
    ids = tokenizer.encode(TEXT)
    assert tokenizer.decode(ids) == TEXT and len(ids) < len(TEXT.encode()) / 1.5, "subwords, lossless"


def test_too_small_bpe_vocabulary_is_a_clear_error():
    with pytest.raises(ValueError, match="needs at least 257"):
        load_tokenizer("bpe-100")


def test_a_repository_in_the_local_hugging_face_cache_loads_without_download(tmp_path, monkeypatch):
    import huggingface_hub.constants

    snapshot = tmp_path / "hub" / "models--acme--tiny-llama" / "snapshots" / "0123abcd"
    write_hf_tokenizer(snapshot, config={"eos_token": "</s>"})
    (tmp_path / "hub" / "models--acme--tiny-llama" / "refs").mkdir()
    (tmp_path / "hub" / "models--acme--tiny-llama" / "refs" / "main").write_text("0123abcd")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    tokenizer = load_tokenizer("acme/tiny-llama")
    assert tokenizer.directory == str(snapshot) and tokenizer.decode(tokenizer.encode(TEXT)) == TEXT
