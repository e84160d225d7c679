"""Parameter names: longctx `Decoder` <-> Hugging Face Llama-family (``LlamaForCausalLM`` layout).

The two layouts hold the same tensors under different names; no tensor is
transposed or permuted (both rotate half-split channel pairs, so HF's q/k
rows are already in longctx's order). Pure string work, no torch.
"""
from __future__ import annotations

import re

#: (longctx name pattern, HF name template); `{0}` is the layer index
_PATTERNS: tuple[tuple[str, str], ...] = (
    (r"embedding\.weight", "model.embed_tokens.weight"),
    (r"norm\.weight", "model.norm.weight"),
    (r"head\.weight", "lm_head.weight"),
    (r"blocks\.(\d+)\.attention_norm\.weight", "model.layers.{0}.input_layernorm.weight"),
    (r"blocks\.(\d+)\.mlp_norm\.weight", "model.layers.{0}.post_attention_layernorm.weight"),
    (r"blocks\.(\d+)\.attention\.([qkvo])\.(weight|bias)", "model.layers.{0}.self_attn.{1}_proj.{2}"),
    (r"blocks\.(\d+)\.mlp\.(gate|up|down)\.weight", "model.layers.{0}.mlp.{1}_proj.weight"),
)
_COMPILED = tuple((re.compile(pattern), template) for pattern, template in _PATTERNS)

#: the output head's names; absent from HF files of tied models
HEAD = "head.weight"
HF_HEAD = "lm_head.weight"

#: HF names older checkpoints carry that hold no parameter (RoPE caches)
_HF_IGNORED = re.compile(r".*\.rotary_emb\.inv_freq$")


def hf_name(name: str) -> str:
    """The HF name of the longctx parameter `name` (ValueError for a name with no HF counterpart)."""
    for pattern, template in _COMPILED:
        match = pattern.fullmatch(name)
        if match:
            return template.format(*match.groups())
    raise ValueError(f"longctx parameter {name!r} has no Hugging Face Llama counterpart; "
                     "extend longctx.model.hf_names._PATTERNS")


def is_ignored_hf_name(name: str) -> bool:
    """True for HF entries that are not parameters (e.g. ``rotary_emb.inv_freq`` of old checkpoints)."""
    return bool(_HF_IGNORED.fullmatch(name))
