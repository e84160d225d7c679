"""Start from Hugging Face weights, train on 4 gloo ranks with dynamic plans, export, reload in transformers.

One shared training run (tied head, GQA 2, llama3 RoPE scaling, documents
split over context-parallel groups by the per-rank token cap); the trained
replica's logits must equal transformers' on the exported directory.
"""
from __future__ import annotations

import pytest
import torch
from transformers import LlamaForCausalLM

from longctx.model.hf_weights import read_safetensors_dir
from longctx.runtime.hf_convert import to_hf
from longctx.runtime.trainer import train
from tests.model.hf_reference import (  # noqa: F401 - one_torch_thread is an autouse fixture
    documents, hf_model, one_torch_thread, packed, reference_logits, relative_error,
)
from tests.runtime.conftest import tiny_dataset, tiny_run  # noqa: F401 - tiny_dataset is a fixture

pytestmark = pytest.mark.timeout(600)


def train_then_logits(run, tokens: torch.Tensor, positions: torch.Tensor, cu: list[int]) -> dict:
    """On every rank: train, then this replica's logits on one packed batch (one process, no group)."""
    result = train(run)
    with torch.no_grad():
        logits = result.model(tokens, positions, cu)
    return {"logits": logits, "losses": result.losses}


@pytest.fixture(scope="module")
def trained(gloo_pool, tiny_dataset, tmp_path_factory):  # noqa: F811 - the fixture imported above
    root = tmp_path_factory.mktemp("hf-train")
    start = hf_model("llama3", kv_heads=2, tied=True)
    start.save_pretrained(root / "start")
    run = tiny_run(tiny_dataset, root / "run", "parallel=dynamic", f"model.hf_path={root / 'start'}",
                   "train.steps=3")
    docs = documents()
    ranks = gloo_pool(4).run(train_then_logits, run, *packed(docs))
    to_hf(root / "run", root / "exported")
    return {"root": root, "start": start, "docs": docs, "ranks": ranks}


def test_trained_replicas_agree_and_ran_every_step(trained):
    first = trained["ranks"][0]
    assert sorted(first["losses"]) == [1, 2, 3]
    for other in trained["ranks"][1:]:
        torch.testing.assert_close(other["logits"], first["logits"], rtol=0, atol=0)


def test_export_reloads_in_transformers_with_the_trained_logits(trained):
    exported = LlamaForCausalLM.from_pretrained(trained["root"] / "exported").eval()
    assert exported.config.tie_word_embeddings and exported.config.rope_parameters["rope_type"] == "llama3"
    error = relative_error(trained["ranks"][0]["logits"], reference_logits(exported, trained["docs"]))
    assert error <= 1e-4, f"trained on 4 ranks, exported, reloaded: max relative logit error {error:.3g}"


def test_training_started_from_the_hf_weights_and_moved_them(trained):
    start, end = (read_safetensors_dir(trained["root"] / d) for d in ("start", "exported"))
    assert sorted(start) == sorted(end)
    largest = max((end[name] - start[name]).abs().max().item() for name in start)
    assert 0 < largest < 0.05, f"3 AdamW steps at lr 3e-3 moved a weight by {largest} (weights ~0.15)"
    untrained = relative_error(trained["ranks"][0]["logits"], reference_logits(trained["start"], trained["docs"]))
    assert untrained > 1e-3, f"training left the logits within {untrained:.3g} of the start"
