"""Ingest writes megatron-core .bin/.idx that megatron-core's own reader returns exactly; bad input fails clearly."""
from __future__ import annotations

import json

import numpy as np
import pytest

from longctx.data import ByteTokenizer, DocumentDataset, ingest
from longctx.data.megatron_format import indexed_dataset_module

TOKENIZER = ByteTokenizer()


def _expected(text: str) -> list[int]:
    return TOKENIZER.encode(text) + [TOKENIZER.eod_id]


def test_text_and_jsonl_round_trip_through_megatron_core_reader(tmp_path):
    (tmp_path / "a.py").write_text("print('hi')\n")
    (tmp_path / "empty.txt").write_text("")
    lines = [{"text": "first ünïcode 文書"}, {"text": "", "id": 7}, {"text": "x" * 70_000, "meta": 1}]
    (tmp_path / "docs.jsonl").write_text("\n".join(json.dumps(line) for line in lines) + "\n\n")
    inputs = [str(tmp_path / "a.py"), str(tmp_path / "empty.txt"), str(tmp_path / "docs.jsonl")]
    prefix = ingest(inputs, str(tmp_path / "out" / "ds"), TOKENIZER)

    texts = ["print('hi')\n", "first ünïcode 文書", "x" * 70_000]
    reader = indexed_dataset_module().IndexedDataset(prefix)  # megatron-core's own reader
    assert reader.index.dtype == np.uint16
    assert list(reader.sequence_lengths) == [len(_expected(t)) for t in texts]
    assert list(reader.document_indices) == [0, 1, 2, 3]
    for index, text in enumerate(texts):
        assert reader[index].tolist() == _expected(text)

    dataset = DocumentDataset(prefix)
    assert len(dataset) == 3 and dataset.lengths.tolist() == [len(_expected(t)) for t in texts]
    assert dataset[1].dtype == np.int32 and dataset[1].tolist() == _expected(texts[1])
    assert dataset.tokens(2, 100, 105).tolist() == [ord("x")] * 5


def test_ingest_replaces_an_existing_dataset_and_leaves_no_temporary_files(tmp_path):
    source = tmp_path / "doc.txt"
    source.write_text("old")
    prefix = str(tmp_path / "ds")
    ingest([str(source)], prefix, TOKENIZER)
    source.write_text("new text")
    ingest([str(source)], prefix, TOKENIZER)
    assert DocumentDataset(prefix)[0].tolist() == _expected("new text")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["doc.txt", "ds.bin", "ds.idx"]


@pytest.mark.parametrize(
    ("files", "inputs", "error", "match"),
    [
        ({}, ["missing.txt"], FileNotFoundError, "missing.txt' does not exist"),
        ({}, ["."], FileNotFoundError, "is a directory"),
        ({}, [], ValueError, r"inputs=\[\] is empty"),
        ({"a.txt": "text"}, "a.txt", TypeError, "must be a list of paths"),
        ({"a.jsonl": '{"text": "ok"}\n{"body": "no text"}\n'}, ["a.jsonl"], ValueError, r"a.jsonl:2 has no string field \"text\" \(found \['body'\]\)"),
        ({"a.jsonl": '{"text": 5}\n'}, ["a.jsonl"], ValueError, r"a.jsonl:1 has no string field"),
        ({"a.jsonl": "not json\n"}, ["a.jsonl"], ValueError, "a.jsonl:1 is not valid JSON"),
        ({"a.txt": "", "b.jsonl": "\n"}, ["a.txt", "b.jsonl"], ValueError, "hold no non-empty document"),
        ({"a.bin": b"\xff\xfe"}, ["a.bin"], ValueError, "is not valid UTF-8"),
    ],
)
def test_bad_input_is_a_clear_error_and_writes_nothing(tmp_path, monkeypatch, files, inputs, error, match):
    monkeypatch.chdir(tmp_path)
    for name, content in files.items():
        (tmp_path / name).write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(error, match=match):
        ingest(inputs, str(tmp_path / "out"), TOKENIZER)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(files)


def test_dataset_errors_name_the_prefix_and_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"prefix='.*nothing' has no dataset .*ingest"):
        DocumentDataset(str(tmp_path / "nothing"))
    (tmp_path / "d.txt").write_text("abc")
    dataset = DocumentDataset(ingest([str(tmp_path / "d.txt")], str(tmp_path / "ds"), TOKENIZER))
    with pytest.raises(IndexError, match=r"index=1 outside \[0, 1\)"):
        dataset[1]
    with pytest.raises(IndexError, match=r"token range \[2, 9\) outside document 0 of length 4"):
        dataset.tokens(0, 2, 9)


def _mixed_inputs(directory) -> list[str]:
    """Text files and a .jsonl of 120 lines (some empty documents), so small shards cut inside the .jsonl."""
    rng = np.random.default_rng(3)
    words = ["alpha", "beta", "γάμμα", "δ", "\n", "世界", "def", "return", " "]
    lines = [json.dumps({"text": " ".join(rng.choice(words, size=int(rng.integers(0, 60))))}) for _ in range(120)]
    (directory / "docs.jsonl").write_text("\n".join(lines) + "\n")
    for name, size in (("a.txt", 5), ("b.txt", 3000), ("c.py", 40)):
        (directory / name).write_text("".join(rng.choice(words, size=size)))
    return [str(directory / n) for n in ("a.txt", "docs.jsonl", "b.txt", "c.py")]


def test_one_and_three_workers_write_identical_files_with_documents_in_input_order(tmp_path):
    from tests.data.hf_tokenizers import write_hf_tokenizer
    from longctx.data import load_tokenizer

    tokenizer = load_tokenizer(str(write_hf_tokenizer(tmp_path / "tok", config={"eos_token": "</s>"})))
    inputs = _mixed_inputs(tmp_path)
    one = ingest(inputs, str(tmp_path / "one"), tokenizer, workers=1, shard_bytes=700)
    three = ingest(inputs, str(tmp_path / "three"), tokenizer, workers=3, shard_bytes=700, progress=True)
    for suffix in (".bin", ".idx"):
        assert (tmp_path / f"one{suffix}").read_bytes() == (tmp_path / f"three{suffix}").read_bytes(), suffix

    texts = [(tmp_path / "a.txt").read_text()]
    texts += [t for t in (json.loads(line)["text"] for line in (tmp_path / "docs.jsonl").read_text().splitlines()) if t]
    texts += [(tmp_path / "b.txt").read_text(), (tmp_path / "c.py").read_text()]
    dataset = DocumentDataset(three)
    assert len(dataset) == len(texts)
    for index, text in enumerate(texts):
        assert dataset[index].tolist() == [tokenizer.bos_id, *tokenizer.encode(text), tokenizer.eod_id], index
    assert sorted(p.name for p in tmp_path.iterdir() if ".tmp-" in p.name) == []


def test_a_bad_line_in_a_later_shard_names_its_line_number_with_workers(tmp_path):
    lines = [json.dumps({"text": f"document {i}"}) for i in range(60)]
    lines[47] = json.dumps({"body": "no text"})
    (tmp_path / "docs.jsonl").write_text("\n".join(lines))
    with pytest.raises(ValueError, match=r"docs.jsonl:48 has no string field"):
        ingest([str(tmp_path / "docs.jsonl")], str(tmp_path / "out"), TOKENIZER, workers=2, shard_bytes=100)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["docs.jsonl"]


@pytest.mark.parametrize(("field", "value"), [("workers", 0), ("shard_bytes", 0), ("workers", 1.5)])
def test_bad_worker_settings_are_clear_errors(tmp_path, field, value):
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(ValueError, match=f"{field}={value!r} must be an integer >= 1"):
        ingest([str(tmp_path / "a.txt")], str(tmp_path / "out"), TOKENIZER, **{field: value})


def test_cli_ingests_with_workers_and_reports_the_dataset(tmp_path, capsys):
    from longctx.cli import main

    inputs = _mixed_inputs(tmp_path)
    assert main(["data", "ingest", *inputs, "--output", str(tmp_path / "ds"), "--workers", "1", "--no-progress"]) == 0
    assert f"{len(DocumentDataset(str(tmp_path / 'ds')))} documents" in capsys.readouterr().out
    assert main(["data", "ingest", str(tmp_path / "missing.txt"), "--output", str(tmp_path / "x")]) == 2
    assert "missing.txt' does not exist" in capsys.readouterr().err
