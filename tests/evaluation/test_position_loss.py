"""`longctx eval`: loss by position bucket equals transformers' per-token loss on the held-out documents."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from transformers import LlamaForCausalLM

from longctx.cli import main
from longctx.data import DocumentDataset
from longctx.data.mixture import heldout_documents
from longctx.evaluation import bucket_edges
from longctx.evaluation.position_loss import PositionBucket, format_table
from tests.evaluation.hf_fixture import ingested_documents, tiny_hf_llama

FRACTION = 0.25


@pytest.fixture(scope="module")
def hf_and_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    hf_dir = tiny_hf_llama(root / "hf")
    return hf_dir, ingested_documents(root / "data", hf_dir)


def _reference_buckets(model, documents: list[np.ndarray], starts: list[int]) -> dict[int, tuple[int, float]]:
    """transformers runs each document alone; target p (1 <= p < L) goes to the last start <= p."""
    totals = {start: [0, 0.0] for start in starts}
    with torch.no_grad():
        for tokens in documents:
            ids = torch.as_tensor(tokens, dtype=torch.int64)[None]
            log_probs = torch.log_softmax(model(ids).logits[0].double(), dim=-1)
            for p in range(1, ids.shape[1]):
                start = max(s for s in starts if s <= p)
                totals[start][0] += 1
                totals[start][1] -= float(log_probs[p - 1, ids[0, p]])
    return {start: (count, total) for start, (count, total) in totals.items()}


def test_eval_of_a_hugging_face_model_matches_transformers_bucket_by_bucket(hf_and_data, tmp_path, capsys):
    hf_dir, prefix = hf_and_data
    out = tmp_path / "eval.json"
    assert main(["eval", "--hf", str(hf_dir), "--data", prefix, "--heldout-fraction", str(FRACTION),
                 "--buckets", "16,64,256", "--min-length", "3", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    result = json.loads(out.read_text())

    dataset = DocumentDataset(prefix)
    expected_ids = [int(i) for i in heldout_documents(len(dataset), FRACTION) if dataset.lengths[i] >= 3]
    assert [d["index"] for d in result["documents"]] == expected_ids and len(expected_ids) >= 8
    assert max(dataset.lengths[expected_ids]) > 256, "the fixture must reach the last bucket"

    reference = _reference_buckets(LlamaForCausalLM.from_pretrained(hf_dir).eval(),
                                   [dataset[i] for i in expected_ids], [0, 16, 64, 256])
    assert [b["bucket"] for b in result["buckets"]] == ["0-16", "16-64", "64-256", "256+"]
    for bucket in result["buckets"]:
        count, total = reference[bucket["start"]]
        assert bucket["targets"] == count, bucket
        assert bucket["loss"] == pytest.approx(total / count, rel=1e-4), bucket
        assert f"{bucket['loss']:.4f}" in printed


def test_max_tokens_cuts_documents_and_drops_later_buckets(hf_and_data, tmp_path):
    hf_dir, prefix = hf_and_data
    out = tmp_path / "eval.json"
    assert main(["eval", "--hf", str(hf_dir), "--data", prefix, "--heldout-fraction", str(FRACTION),
                 "--buckets", "16,64", "--max-tokens", "64", "--json", str(out), "--max-documents", "3"]) == 0
    result = json.loads(out.read_text())
    assert len(result["documents"]) == 3
    assert result["buckets"][2]["targets"] == 0 and result["buckets"][2]["loss"] is None
    assert result["buckets"][1]["targets"] > 0


@pytest.mark.parametrize(("argv", "message"), [
    ([], "give a run directory, or both --hf DIR and --data PREFIX"),
    (["{tmp}"], "has no config.yaml"),
    (["--hf", "{hf}", "--data", "{data}", "--buckets", "64,16"], "must be increasing positive integers"),
    (["--hf", "{hf}", "--data", "{data}", "--buckets", "a,b"], "must be comma-separated integers"),
    (["--hf", "{hf}", "--data", "{data}"], "the run held out no documents"),
    (["--hf", "{hf}", "--data", "{data}", "--heldout-fraction", "0.25", "--min-length", "100000"],
     "no held-out document"),
])
def test_bad_arguments_are_clear_errors_with_exit_2(hf_and_data, tmp_path, capsys, argv, message):
    hf_dir, prefix = hf_and_data
    argv = [a.format(tmp=tmp_path, hf=hf_dir, data=prefix) for a in argv]
    assert main(["eval", *argv]) == 2
    assert message in capsys.readouterr().err


def test_bucket_edges_labels_and_table():
    assert bucket_edges(100_000) == [0, 1024, 4096, 16384, 65536]
    assert bucket_edges(1024) == [0] and bucket_edges(3000, first=128) == [0, 128, 512, 2048]
    buckets = [PositionBucket(0, 1024, 4, 8.0), PositionBucket(1024, 4096, 0, 0.0), PositionBucket(1 << 20, None, 1, 1.0)]
    assert [b.label for b in buckets] == ["0-1K", "1K-4K", "1M+"]
    assert buckets[0].loss == 2.0 and math.isnan(buckets[1].loss)
    table = format_table(buckets).splitlines()
    assert table[1].split() == ["0-1K", "4", "2.0000", f"{math.exp(2):.2f}"] and table[2].split()[1:] == ["0", "-", "-"]
