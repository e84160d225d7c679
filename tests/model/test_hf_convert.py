"""Export and conversion: longctx -> HF directories that transformers reads back exactly; DCP round trips bit-exact."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from longctx.cli import main as longctx_main
from longctx.model import Decoder, ModelConfig, RopeScaling, save_hf
from longctx.model.hf_weights import INDEX_FILE, read_safetensors_dir
from tests.model.hf_reference import (  # noqa: F401 - one_torch_thread is an autouse fixture
    ORIGINAL_CONTEXT, documents, hf_model, one_torch_thread, packed, reference_logits, relative_error,
)

SCALINGS = {
    "none": RopeScaling(),
    "linear": RopeScaling(kind="linear", factor=2.0),
    "llama3": RopeScaling(kind="llama3", factor=8.0, original_max_position_embeddings=ORIGINAL_CONTEXT),
    "yarn": RopeScaling(kind="yarn", factor=4.0, original_max_position_embeddings=ORIGINAL_CONTEXT,
                        mscale=2.0, mscale_all_dim=1.0, beta_fast=16.0),
}


def _random_decoder(scaling: RopeScaling, tied: bool, qkv_bias: bool) -> Decoder:
    torch.manual_seed(3)
    model = Decoder(ModelConfig(name="custom", vocab_size=263, rope_theta=500.0, rope_scaling=scaling,
                                tie_embeddings=tied, qkv_bias=qkv_bias))
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            parameter.copy_(1 + 0.3 * torch.randn_like(parameter) if "norm" in name
                            else 0.15 * torch.randn_like(parameter))
    return model


@pytest.mark.parametrize("kind", sorted(SCALINGS))
@pytest.mark.parametrize("tied,qkv_bias", [(False, False), (True, True)], ids=["llama-untied", "qwen2-tied"])
def test_exported_directory_loads_in_transformers_with_the_same_logits(tmp_path, kind, tied, qkv_bias):
    model = _random_decoder(SCALINGS[kind], tied, qkv_bias)
    save_hf(model, tmp_path / "hf", max_shard_bytes=30_000)
    assert (tmp_path / "hf" / INDEX_FILE).is_file()
    reference = AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    assert type(reference).__name__ == ("Qwen2ForCausalLM" if qkv_bias else "LlamaForCausalLM")
    assert reference.config.tie_word_embeddings is tied
    docs = documents()
    tokens, positions, cu = packed(docs)
    with torch.no_grad():
        ours = model(tokens, positions, cu)
    error = relative_error(ours, reference_logits(reference, docs))
    assert error <= 1e-4, f"export {kind} tied={tied} bias={qkv_bias}: max relative logit error {error:.3g}"


def _same_tensors(first: dict, second: dict) -> None:
    assert sorted(first) == sorted(second)
    for name in first:
        assert first[name].dtype == second[name].dtype, name
        assert torch.equal(first[name], second[name]), f"{name} changed in the round trip"


@pytest.mark.parametrize("dtype,tied,qkv_bias,shard", [(torch.bfloat16, True, False, "20KB"),
                                                       (torch.float32, False, True, "5GB")],
                         ids=["bf16-tied-sharded", "fp32-qwen2-single"])
def test_from_hf_then_to_hf_reproduces_the_weights_bit_for_bit(tmp_path, dtype, tied, qkv_bias, shard):
    hf_model("llama3", 2, tied, qkv_bias).to(dtype).save_pretrained(tmp_path / "hf", max_shard_size=shard)
    assert longctx_main(["convert", "from-hf", str(tmp_path / "hf"), str(tmp_path / "ckpt")]) == 0
    assert longctx_main(["convert", "to-hf", str(tmp_path / "ckpt"), str(tmp_path / "back"),
                         "--max-shard-size", shard]) == 0
    _same_tensors(read_safetensors_dir(tmp_path / "hf"), read_safetensors_dir(tmp_path / "back"))
    original, back = (json.loads((tmp_path / d / "config.json").read_text()) for d in ("hf", "back"))
    for key in ("model_type", "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                "num_attention_heads", "num_key_value_heads", "rms_norm_eps", "tie_word_embeddings", "rope_parameters"):
        assert back[key] == original[key], key
    assert back["dtype"] == str(dtype).removeprefix("torch.")


def test_to_hf_casts_on_request_and_writes_one_file_when_it_fits(tmp_path):
    hf_model("none", 1, False).save_pretrained(tmp_path / "hf")
    longctx_main(["convert", "from-hf", str(tmp_path / "hf"), str(tmp_path / "ckpt")])
    longctx_main(["convert", "to-hf", str(tmp_path / "ckpt"), str(tmp_path / "half"), "--dtype", "bfloat16"])
    weights = load_file(str(tmp_path / "half" / "model.safetensors"))
    assert {t.dtype for t in weights.values()} == {torch.bfloat16}
    assert not (tmp_path / "half" / INDEX_FILE).exists()


def test_to_hf_names_what_is_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="neither a complete DCP checkpoint"):
        longctx_main(["convert", "to-hf", str(tmp_path), str(tmp_path / "out")])
    hf_model("none", 1, False).save_pretrained(tmp_path / "hf")
    longctx_main(["convert", "from-hf", str(tmp_path / "hf"), str(tmp_path / "ckpt")])
    (tmp_path / "ckpt" / "config.yaml").unlink()
    with pytest.raises(FileNotFoundError, match="pass --config"):
        longctx_main(["convert", "to-hf", str(tmp_path / "ckpt"), str(tmp_path / "out")])


def test_outputs_replace_an_earlier_output_but_never_a_directory_with_other_files(tmp_path):
    model = _random_decoder(RopeScaling(), tied=False, qkv_bias=False)
    save_hf(model, tmp_path / "hf")
    save_hf(model, tmp_path / "hf", max_shard_bytes=30_000)  # replaces the single-file export
    assert (tmp_path / "hf" / INDEX_FILE).is_file() and not (tmp_path / "hf" / "model.safetensors").exists()
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match=r"holds \['todo.txt'\]"):
        save_hf(model, tmp_path / "notes")
    with pytest.raises(FileExistsError, match=r"holds \['todo.txt'\]"):
        longctx_main(["convert", "from-hf", str(tmp_path / "hf"), str(tmp_path / "notes")])
    assert (tmp_path / "notes" / "todo.txt").read_text() == "keep me"
