"""Reading Hugging Face config.json: old and new RoPE formats alike, clear errors for what longctx cannot compute."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from longctx.model import Decoder, ModelConfig, ModelConfigError, RopeScaling, load_hf
from longctx.model.hf_config import model_fields_from_hf
from longctx.runtime.train_cli import compose_run_config
from tests.model.hf_reference import (  # noqa: F401 - one_torch_thread is an autouse fixture
    ROPE, hf_model, one_torch_thread,
)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """HF directories (transformers 5 format) and their config.json, one per RoPE case."""
    root = tmp_path_factory.mktemp("hf")
    for rope in ROPE:
        hf_model(rope, 2, False).save_pretrained(root / rope)
    return root


def _config(saved, rope: str) -> dict:
    return json.loads((saved / rope / "config.json").read_text())


def _old_format(config: dict, type_key: str) -> dict:
    """The config as transformers 4 wrote it: top-level rope_theta, rope_scaling (null for plain RoPE)."""
    old = {k: v for k, v in config.items() if k != "rope_parameters"}
    params = dict(config["rope_parameters"])
    old["rope_theta"] = params.pop("rope_theta")
    kind = params.pop("rope_type")
    old["rope_scaling"] = None if kind == "default" else {type_key: kind, **params}
    return old


@pytest.mark.parametrize("rope", sorted(ROPE))
@pytest.mark.parametrize("type_key", ["type", "rope_type"])
def test_old_and_new_rope_formats_give_the_same_model_config(saved, rope, type_key):
    new = _config(saved, rope)
    assert model_fields_from_hf(_old_format(new, type_key), "old") == model_fields_from_hf(new, "new")


def test_the_rope_fields_reach_the_scaling_config(saved):
    fields = model_fields_from_hf(_config(saved, "yarn-mscale"), "x")
    assert (fields["rope_theta"], fields["norm_eps"], fields["vocab_size"]) == (500.0, 1e-5, 263)
    assert load_hf(saved / "yarn-mscale").blocks[1].mlp_norm.eps == 1e-5
    assert fields["rope_scaling"] == RopeScaling(kind="yarn", factor=4.0, original_max_position_embeddings=32,
                                                 mscale=2.0, mscale_all_dim=1.0, beta_fast=16.0, beta_slow=2.0)


def test_yarn_without_factor_takes_max_over_original_positions(saved):
    config = _config(saved, "yarn")
    del config["rope_parameters"]["factor"]
    config["max_position_embeddings"] = 320
    assert model_fields_from_hf(config, "x")["rope_scaling"].factor == 10.0


UNSUPPORTED = [
    ({"model_type": "gemma"}, "model_type='gemma'"),
    ({"hidden_act": "gelu"}, "hidden_act='gelu'"),
    ({"attention_bias": True}, "attention_bias=True"),
    ({"mlp_bias": True}, "mlp_bias=True"),
    ({"head_dim": 32}, "head_dim=32"),
    ({"partial_rotary_factor": 0.5}, "partial_rotary_factor=0.5"),
    ({"rope_parameters": {"rope_type": "dynamic", "factor": 2.0, "rope_theta": 1e4}}, "rope_type='dynamic'"),
    ({"rope_parameters": {"rope_type": "longrope", "rope_theta": 1e4}}, "rope_type='longrope'"),
    ({"rope_parameters": {"rope_type": "linear", "rope_theta": 1e4, "factor": 2.0, "short_factor": [1]}},
     "short_factor"),
    ({"rope_parameters": {"rope_type": "linear", "rope_theta": 1e4, "factor": 0.5}}, "factor=0.5"),
    ({"rope_parameters": {"full_attention": {"rope_type": "default"}}}, "one flat RoPE setting"),
    ({"model_type": "mistral", "sliding_window": 4096}, "sliding_window=4096"),
    ({"model_type": "qwen2", "use_sliding_window": True}, "use_sliding_window=True"),
]


@pytest.mark.parametrize("change,named", UNSUPPORTED, ids=[n for _, n in UNSUPPORTED])
def test_unsupported_settings_are_errors_naming_field_and_value(saved, change, named):
    config = {**_config(saved, "none"), **change}
    with pytest.raises(ModelConfigError, match="config.json") as error:
        model_fields_from_hf(config, "somewhere/config.json")
    assert named in str(error.value)


def test_missing_field_is_named(saved):
    config = _config(saved, "none")
    del config["intermediate_size"]
    with pytest.raises(ModelConfigError, match="'intermediate_size' is missing"):
        model_fields_from_hf(config, "x")


def test_weights_that_do_not_match_the_config_are_named(saved, tmp_path):
    directory = tmp_path / "broken"
    hf_model("none", 2, False).save_pretrained(directory)
    weights = load_file(str(directory / "model.safetensors"))
    removed = weights.pop("model.layers.1.mlp.up_proj.weight")
    save_file(weights, str(directory / "model.safetensors"))
    with pytest.raises(ModelConfigError, match=r"missing \['model.layers.1.mlp.up_proj.weight'\]"):
        load_hf(directory)
    weights["model.layers.1.mlp.up_proj.weight"] = removed[:-1]
    save_file(weights, str(directory / "model.safetensors"))
    with pytest.raises(ModelConfigError, match=r"up_proj.weight has shape \(95, 64\), config.json implies \(96, 64\)"):
        load_hf(directory)


def test_hf_path_that_is_not_a_model_directory_is_named(tmp_path):
    with pytest.raises(ModelConfigError, match="model.hf_path=.*config.json not found"):
        ModelConfig(hf_path=str(tmp_path))


def test_run_config_with_hf_path_takes_the_checkpoint_shape_and_optionally_keeps_its_own_rope(saved, tmp_path):
    common = [f"model.hf_path={saved / 'llama3'}", f"train.output_dir={tmp_path}"]
    model = compose_run_config(common).model
    assert (model.vocab_size, model.dim, model.n_kv_heads, model.ffn_dim) == (263, 64, 2, 96)
    assert (model.rope_theta, model.rope_scaling.kind) == (500.0, "llama3")
    extended = compose_run_config([*common, "model.rope_from_hf=false", "model.rope_theta=20000",
                                   "model.rope_scaling.kind=linear", "model.rope_scaling.factor=4"]).model
    assert (extended.rope_theta, extended.rope_scaling.kind, extended.rope_scaling.factor) == (20000, "linear", 4)
    assert extended.vocab_size == 263


@pytest.mark.parametrize("fields,named", [
    ({"kind": "ntk"}, "kind='ntk'"), ({"kind": "none", "factor": 2.0}, "no effect with kind='none'"),
    ({"kind": "llama3", "factor": 8.0}, "original_max_position_embeddings=None"),
    ({"kind": "llama3", "factor": 8.0, "original_max_position_embeddings": 64, "low_freq_factor": 4.0},
     "low_freq_factor < high_freq_factor"),
    ({"kind": "yarn", "factor": 2.0, "original_max_position_embeddings": 64, "beta_fast": -1.0}, "beta_fast=-1.0"),
])
def test_rope_scaling_validation_names_the_field(fields, named):
    with pytest.raises(ModelConfigError, match="model.rope_scaling") as error:
        RopeScaling(**fields)
    assert named in str(error.value)


def test_tied_and_biased_configs_count_their_parameters():
    config = ModelConfig(tie_embeddings=True, qkv_bias=True)
    model = Decoder(config)
    assert sum(p.numel() for p in model.parameters()) == config.num_parameters()
    assert torch.equal(model.blocks[0].attention.k.bias, torch.zeros(config.kv_dim))
