"""Llama-style decoder (RMSNorm, fp32 RoPE from per-document positions, GQA, SwiGLU).

Attention runs through `longctx.attention.context_parallel_attention`, so the
same model computes a local batch or one rank's shard of a ring / Ulysses /
hybrid group.
"""
from longctx.model.config import ModelConfig, ModelConfigError, preset_names
from longctx.model.decoder import LOCAL, AttentionLayout, Decoder
from longctx.model.flops import FLOPS_CONVENTION, mfu, step_flops
from longctx.model.loss import IGNORE, count_targets, next_token_targets, step_loss

__all__ = [
    "FLOPS_CONVENTION", "IGNORE", "LOCAL", "AttentionLayout", "Decoder", "ModelConfig",
    "ModelConfigError", "count_targets", "preset_names", "mfu", "next_token_targets", "step_flops", "step_loss",
]
