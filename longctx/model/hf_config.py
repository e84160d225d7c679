"""Hugging Face ``config.json`` <-> `ModelConfig`, for Llama-family decoders (llama, qwen2, mistral).

Reads configs written by older transformers (``rope_theta`` + ``rope_scaling``
with ``type`` or ``rope_type``) and by transformers 5 (``rope_parameters``),
resolving defaults the way transformers does. Anything longctx's decoder
cannot compute exactly (another activation, sliding windows, partial rotary,
other RoPE types, o/MLP biases, a head_dim other than hidden/heads) is an
error naming the file, the field and the value. Pure JSON: no torch, so
composing a run config with ``model.hf_path`` stays light.
"""
from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path
from typing import Any

from longctx.model.config import ModelConfig, ModelConfigError, RopeScaling

HF_CONFIG = "config.json"

#: model_type -> (architecture written on export, q/k/v carry biases)
MODEL_TYPES = {"llama": ("LlamaForCausalLM", False), "mistral": ("MistralForCausalLM", False),
               "qwen2": ("Qwen2ForCausalLM", True)}

#: HF rope_type -> RopeScaling.kind
ROPE_TYPES = {"default": "none", "linear": "linear", "llama3": "llama3", "yarn": "yarn"}

#: keys of a rope_scaling / rope_parameters dict that carry no numbers longctx uses differently
_ROPE_KEYS = {"type", "rope_type", "rope_theta", "partial_rotary_factor"} | {
    f.name for f in fields(RopeScaling) if f.name != "kind"}

#: ModelConfig fields a Hugging Face directory defines (everything but name, hf_path, rope_from_hf)
HF_DEFINED = ("vocab_size", "dim", "n_layers", "n_heads", "n_kv_heads", "ffn_dim", "rope_theta", "norm_eps",
              "init_std", "rope_scaling", "tie_embeddings", "qkv_bias")
_ROPE_FIELDS = ("rope_theta", "rope_scaling")


def read_hf_json(directory: str | Path) -> dict[str, Any]:
    """The parsed ``config.json`` of a Hugging Face model directory."""
    path = Path(directory) / HF_CONFIG
    if not path.is_file():
        raise ModelConfigError(f"model.hf_path={str(directory)!r}: {path} not found; give a local Hugging Face "
                               "model directory (config.json + *.safetensors)")
    return json.loads(path.read_text())


def model_fields_from_hf(hf: dict[str, Any], where: str) -> dict[str, Any]:
    """`ModelConfig` field values of the HF config `hf` (`where` names its file in errors)."""
    model_type = hf.get("model_type")
    if model_type not in MODEL_TYPES:
        raise ModelConfigError(f"{where}: model_type={model_type!r} is not supported; longctx loads "
                               f"{sorted(MODEL_TYPES)} (Llama-family decoders)")
    _check_supported(hf, model_type, where)
    dim, heads = _required(hf, "hidden_size", where), _required(hf, "num_attention_heads", where)
    head_dim = hf.get("head_dim")
    if head_dim is not None and head_dim * heads != dim:
        raise ModelConfigError(f"{where}: head_dim={head_dim} differs from hidden_size/num_attention_heads = "
                               f"{dim}/{heads}; longctx needs head_dim * heads == hidden_size")
    theta, scaling = _rope(hf, where)
    return {
        "vocab_size": _required(hf, "vocab_size", where), "dim": dim,
        "n_layers": _required(hf, "num_hidden_layers", where), "n_heads": heads,
        "n_kv_heads": hf.get("num_key_value_heads") or heads,
        "ffn_dim": _required(hf, "intermediate_size", where), "rope_theta": float(theta),
        "norm_eps": float(hf.get("rms_norm_eps", 1e-6)), "init_std": float(hf.get("initializer_range", 0.02)),
        "rope_scaling": scaling, "tie_embeddings": bool(hf.get("tie_word_embeddings", False)),
        "qkv_bias": MODEL_TYPES[model_type][1],
    }


def apply_hf_config(config: ModelConfig) -> None:
    """Replace `config`'s HF-defined fields by those of ``config.hf_path`` (RoPE only when rope_from_hf).

    `name` becomes ``hf:<directory name>``.
    """
    directory = Path(config.hf_path)
    values = model_fields_from_hf(read_hf_json(directory), str(directory / HF_CONFIG))
    config.name = f"hf:{directory.name}"
    for name in HF_DEFINED:
        if config.rope_from_hf or name not in _ROPE_FIELDS:
            setattr(config, name, values[name])


def hf_config_dict(config: ModelConfig, dtype: str = "float32") -> dict[str, Any]:
    """A ``config.json`` for `config`: llama (qwen2 when q/k/v have biases), readable by transformers 4 and 5.

    RoPE is written both ways: ``rope_theta`` + ``rope_scaling`` (transformers
    4) and ``rope_parameters`` (transformers 5; it prefers a non-null
    rope_scaling, which says the same).
    """
    model_type = "qwen2" if config.qkv_bias else "llama"
    scaling = config.rope_scaling
    parameters = _rope_parameters(config)
    hf: dict[str, Any] = {
        "architectures": [MODEL_TYPES[model_type][0]], "model_type": model_type,
        "vocab_size": config.vocab_size, "hidden_size": config.dim, "intermediate_size": config.ffn_dim,
        "num_hidden_layers": config.n_layers, "num_attention_heads": config.n_heads,
        "num_key_value_heads": config.n_kv_heads, "head_dim": config.head_dim, "hidden_act": "silu",
        "rms_norm_eps": config.norm_eps, "initializer_range": config.init_std,
        "tie_word_embeddings": config.tie_embeddings, "rope_theta": config.rope_theta,
        "rope_scaling": _without(parameters, "rope_theta") if scaling.kind != "none" else None,
        "rope_parameters": parameters,
        "torch_dtype": dtype, "dtype": dtype,
    }
    if scaling.kind != "none":
        hf["max_position_embeddings"] = int(scaling.factor * (scaling.original_max_position_embeddings or 0)) or None
    if model_type == "llama":
        hf.update(attention_bias=False, mlp_bias=False)
    else:
        hf.update(use_sliding_window=False)
    return {key: value for key, value in hf.items() if value is not None or key == "rope_scaling"}


def _rope_parameters(config: ModelConfig) -> dict[str, Any]:
    """transformers 5's ``rope_parameters`` of `config` (rope_type, rope_theta and the kind's own fields)."""
    scaling = config.rope_scaling
    if scaling.kind == "none":
        return {"rope_type": "default", "rope_theta": config.rope_theta}
    parameters = {"rope_type": scaling.kind, "rope_theta": config.rope_theta, "factor": scaling.factor}
    if scaling.kind in ("llama3", "yarn"):
        parameters["original_max_position_embeddings"] = scaling.original_max_position_embeddings
    if scaling.kind == "llama3":
        parameters.update(low_freq_factor=scaling.low_freq_factor, high_freq_factor=scaling.high_freq_factor)
    if scaling.kind == "yarn":
        parameters.update(beta_fast=scaling.beta_fast, beta_slow=scaling.beta_slow, truncate=scaling.truncate)
        parameters.update({name: getattr(scaling, name) for name in ("attention_factor", "mscale", "mscale_all_dim")
                           if getattr(scaling, name) is not None})
    return parameters


def _without(mapping: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in mapping.items() if k != key}


def _required(hf: dict[str, Any], key: str, where: str) -> Any:
    if key not in hf:
        raise ModelConfigError(f"{where}: the field {key!r} is missing; a Llama-family config.json defines it")
    return hf[key]


def _check_supported(hf: dict[str, Any], model_type: str, where: str) -> None:
    """Errors for settings whose computation the longctx decoder does not have."""
    act = hf.get("hidden_act", "silu")
    if act != "silu":
        raise ModelConfigError(f"{where}: hidden_act={act!r} is not supported; longctx's MLP is SwiGLU (silu)")
    for key in ("attention_bias", "mlp_bias"):
        if hf.get(key):
            raise ModelConfigError(f"{where}: {key}={hf[key]!r} is not supported; longctx has biases only on "
                                   "q/k/v (model_type qwen2), never on o or the MLP")
    if model_type == "qwen2" and hf.get("use_sliding_window"):
        raise ModelConfigError(f"{where}: use_sliding_window={hf['use_sliding_window']!r} is not supported; "
                               "longctx attends over the whole document (set it to false)")
    if model_type == "mistral" and hf.get("sliding_window") is not None:
        raise ModelConfigError(f"{where}: sliding_window={hf['sliding_window']!r} is not supported; longctx "
                               "attends over the whole document (a null sliding_window loads)")
    partial = hf.get("partial_rotary_factor", 1.0)
    if partial not in (None, 1, 1.0):
        raise ModelConfigError(f"{where}: partial_rotary_factor={partial!r} is not supported; longctx rotates "
                               "every channel (1.0)")


def _rope(hf: dict[str, Any], where: str) -> tuple[float, RopeScaling]:
    """(rope_theta, RopeScaling) with transformers' precedence: rope_scaling, else rope_parameters."""
    params = hf.get("rope_scaling") or hf.get("rope_parameters") or {}
    field = "rope_scaling" if hf.get("rope_scaling") else "rope_parameters"
    if not isinstance(params, dict) or any(isinstance(value, dict) for value in params.values()):
        raise ModelConfigError(f"{where}: {field}={params!r} is not supported; longctx needs one flat RoPE "
                               "setting for every layer")
    unknown = sorted(set(params) - _ROPE_KEYS)
    if unknown:
        raise ModelConfigError(f"{where}: {field} keys {unknown} are not supported; longctx knows {sorted(_ROPE_KEYS)}")
    if params.get("partial_rotary_factor", 1.0) not in (None, 1, 1.0):
        raise ModelConfigError(f"{where}: {field}.partial_rotary_factor={params['partial_rotary_factor']!r} is "
                               "not supported; longctx rotates every channel (1.0)")
    theta = params.get("rope_theta") or hf.get("rope_theta") or 10000.0
    rope_type = params.get("rope_type", params.get("type", "default"))
    if rope_type not in ROPE_TYPES:
        raise ModelConfigError(f"{where}: {field}.rope_type={rope_type!r} is not supported; longctx computes "
                               f"{sorted(ROPE_TYPES)}")
    kind = ROPE_TYPES[rope_type]
    if kind == "none":
        return theta, RopeScaling()
    original = None
    if kind in ("llama3", "yarn"):
        original = params.get("original_max_position_embeddings") or hf.get("original_max_position_embeddings") \
            or hf.get("max_position_embeddings")
        original = int(original) if original else None
    factor = params.get("factor")
    if factor is None and kind == "yarn" and original:
        factor = hf.get("max_position_embeddings", original) / original
    if factor is None:
        raise ModelConfigError(f"{where}: {field}.factor is missing; rope_type={rope_type!r} needs it")
    defaults = RopeScaling()
    values = {name: params[name] for name in ("low_freq_factor", "high_freq_factor", "attention_factor", "mscale",
                                              "mscale_all_dim", "truncate") if params.get(name) is not None}
    values.update(beta_fast=params.get("beta_fast") or defaults.beta_fast,
                  beta_slow=params.get("beta_slow") or defaults.beta_slow)
    try:
        return theta, RopeScaling(kind=kind, factor=float(factor), original_max_position_embeddings=original,
                                  **values)
    except ModelConfigError as error:
        raise ModelConfigError(f"{where}: {field}: {error}") from None
