"""experiment=extend_context end to end: a tiny random HF Llama, a long/short mix, training on 2 ranks, then eval."""
from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from safetensors.torch import load_file

from longctx.cli import main
from longctx.data import DocumentDataset
from longctx.data.mixture import heldout_documents
from longctx.runtime.hf_convert import checkpoint_model_state
from longctx.runtime.checkpoint_files import complete_checkpoints
from tests.evaluation.hf_fixture import BASE_THETA, ingested_documents, tiny_hf_llama

HELDOUT = 0.2


@pytest.fixture(scope="module")
def extended_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("extend")
    hf_dir = tiny_hf_llama(root / "hf")
    prefix = ingested_documents(root / "data", hf_dir, count=60)
    run_dir = root / "run"
    sources = (f"data.sources=[{{path:{prefix},weight:0.6,min_length:64,name:long}},"
               f"{{path:{prefix},weight:0.4,max_length:63,name:short}}]")
    code = main(["train", "experiment=extend_context", f"model.hf_path={hf_dir}", sources,
                 f"data.heldout_fraction={HELDOUT}", "data.tokens_per_step=512", "data.max_doc_tokens=256",
                 "train.steps=3", "train.checkpoint_every=0", "train.progress=false", "optim.warmup_steps=1",
                 "parallel.nprocs=2", "parallel.planner=greedy", f"train.output_dir={run_dir}", "tracker=jsonl"])
    assert code == 0
    return hf_dir, prefix, run_dir


def test_the_recipe_starts_from_the_hf_weights_with_a_raised_rope_base(extended_run):
    hf_dir, _, run_dir = extended_run
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["model"]["rope_theta"] == 500000.0 > BASE_THETA
    hf_config = json.loads((hf_dir / "config.json").read_text())
    assert config["data"]["tokenizer"] == str(hf_dir) and config["model"]["vocab_size"] == hf_config["vocab_size"]
    final = json.loads((run_dir / "final_metrics.json").read_text())
    assert final["step"] == 3 and np.isfinite(final["loss"])

    hf = load_file(hf_dir / "model.safetensors")
    trained = checkpoint_model_state(complete_checkpoints(run_dir)[0][1])
    embedding, trained_embedding = hf["model.embed_tokens.weight"], trained["embedding.weight"]
    change = float((trained_embedding - embedding).abs().max())
    assert 0 < change < 0.01 < float(embedding.abs().max()), "3 steps at lr 1e-4 move the HF weights only a little"


def test_eval_reports_loss_by_position_on_held_out_documents_and_logs_it(extended_run, tmp_path):
    _, prefix, run_dir = extended_run
    out = tmp_path / "eval.json"
    assert main(["eval", str(run_dir), "--buckets", "16,64", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    dataset = DocumentDataset(prefix)
    held_out = set(heldout_documents(len(dataset), HELDOUT).tolist())
    assert {d["index"] for d in result["documents"]} <= held_out and result["step"] == 3
    assert all(b["targets"] > 0 and np.isfinite(b["loss"]) for b in result["buckets"])
    logged = [json.loads(line) for line in (run_dir / "eval" / "metrics.jsonl").read_text().splitlines()]
    assert logged[-1]["step"] == 3 and logged[-1]["eval/loss_64+"] == pytest.approx(result["buckets"][2]["loss"])
