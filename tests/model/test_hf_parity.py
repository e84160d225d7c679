"""longctx's decoder loaded from a Hugging Face directory gives transformers' logits (fp32, 1e-4 relative).

transformers builds, randomises and saves tiny models (single file and sharded
safetensors); `load_hf` reads them; longctx runs the documents packed with
per-document positions, transformers runs each document alone.
"""
from __future__ import annotations

import itertools
import json

import pytest
import torch

from longctx.model import load_hf
from longctx.model.hf_weights import INDEX_FILE
from longctx.model.rope import NO_SCALING
from tests.model.hf_reference import (  # noqa: F401 - one_torch_thread is an autouse fixture
    HEADS, ROPE, documents, hf_model, one_torch_thread, packed, reference_logits, relative_error,
)

TOLERANCE = 1e-4

#: (rope, GQA ratio, tied): every scaling kind x GQA 1/2/4 x tied/untied, plus the yarn variants
CASES = [*itertools.product(("none", "linear", "llama3", "yarn"), (1, 2, 4), (False, True)),
         ("yarn-mscale", 2, False), ("yarn-untruncated", 4, True)]


def _longctx_logits(model, docs) -> torch.Tensor:
    tokens, positions, cu = packed(docs)
    with torch.no_grad():
        return model(tokens, positions, cu)


@pytest.mark.parametrize("rope,ratio,tied", CASES, ids=lambda v: str(v))
def test_packed_logits_match_transformers_per_document(tmp_path, rope, ratio, tied):
    reference = hf_model(rope, HEADS // ratio, tied)
    sharded = ratio == 2  # a third of the cases load through model.safetensors.index.json
    reference.save_pretrained(tmp_path, max_shard_size="40KB" if sharded else "5GB")
    assert (tmp_path / INDEX_FILE).is_file() == sharded
    model = load_hf(tmp_path)
    assert (model.config.tie_embeddings, model.config.n_kv_heads) == (tied, HEADS // ratio)
    assert model.config.rope_scaling.kind == ROPE[rope]["rope_type"].replace("default", "none")
    docs = documents()
    error = relative_error(_longctx_logits(model, docs), reference_logits(reference, docs))
    assert error <= TOLERANCE, f"{rope}, GQA {ratio}, tied={tied}: max relative logit error {error:.3g}"


@pytest.mark.parametrize("rope", ["linear", "llama3", "yarn", "yarn-mscale", "yarn-untruncated"])
def test_the_scaling_changes_the_logits_beyond_the_tolerance(tmp_path, rope):
    """Guards the parity test: the documents run past the original context, so dropping the scaling shows."""
    hf_model(rope, 2, False).save_pretrained(tmp_path)
    model, docs = load_hf(tmp_path), documents()
    scaled = _longctx_logits(model, docs)
    model.config.rope_scaling = NO_SCALING
    assert relative_error(_longctx_logits(model, docs), scaled) > 100 * TOLERANCE


def test_qwen2_qkv_biases_match_transformers(tmp_path):
    reference = hf_model("yarn", 2, tied=True, qkv_bias=True)
    reference.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "qwen2"
    model = load_hf(tmp_path)
    assert model.config.qkv_bias and model.blocks[0].attention.q.bias.abs().max() > 0
    docs = documents()
    error = relative_error(_longctx_logits(model, docs), reference_logits(reference, docs))
    assert error <= TOLERANCE, f"qwen2 with q/k/v biases: max relative logit error {error:.3g}"


def test_load_hf_returns_the_requested_dtype_and_tied_head_shares_the_embedding(tmp_path):
    hf_model("none", 2, tied=True).save_pretrained(tmp_path)
    model = load_hf(tmp_path, dtype=torch.float64)
    assert model.head.weight is model.embedding.weight
    assert model.embedding.weight.dtype == torch.float64
    assert _longctx_logits(model, documents()).shape == (sum(d.numel() for d in documents()), 263)
