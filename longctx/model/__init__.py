"""Llama-style decoder (RMSNorm, fp32 RoPE from per-document positions, GQA, SwiGLU).

Attention runs through `longctx.attention.context_parallel_attention`, so the
same model computes a local batch or one rank's shard of a ring / Ulysses /
hybrid group.

Names are imported on first use (PEP 562), so reading a `ModelConfig` (the
Hydra schema does, e.g. in `longctx launch`) does not import torch.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "ModelConfig": "config", "ModelConfigError": "config", "RopeScaling": "config", "preset_names": "config",
    "load_hf": "hf_weights", "load_hf_weights": "hf_weights", "save_hf": "hf_weights",
    "LOCAL": "decoder", "AttentionLayout": "decoder", "Decoder": "decoder",
    "FLOPS_CONVENTION": "flops", "mfu": "flops", "step_flops": "flops",
    "IGNORE": "loss", "count_targets": "loss", "next_token_targets": "loss", "step_loss": "loss",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'longctx.model' has no attribute {name!r}")
    return getattr(importlib.import_module(f"longctx.model.{_EXPORTS[name]}"), name)
