"""ModelConfig: the shape of a Llama-style decoder, validated, with named presets.

Presets are the files of the Hydra group ``configs/model/`` (one source for
Hydra and Python): ``tiny`` (CPU tests, ~0.1M parameters), ``small``, and the
Llama-3 shapes ``llama3-8b`` and ``llama3-70b``, used here only for FLOPs and
memory accounting.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from importlib.resources import files

import yaml


class ModelConfigError(ValueError):
    """A model shape that cannot work; the message names the field, the value and the fix."""


#: RoPE scaling kinds longctx computes (longctx.model.rope); Hugging Face calls them rope_type
ROPE_SCALING_KINDS = ("none", "linear", "llama3", "yarn")


@dataclass
class RopeScaling:
    """How RoPE frequencies are stretched for a context beyond the pretraining length.

    Field names follow Hugging Face's ``rope_scaling`` / ``rope_parameters``
    so configs map one to one; the formulas are in `longctx.model.rope`.
    ``none``: plain RoPE. ``linear``: every frequency divided by `factor`
    (position interpolation). ``llama3``: Llama 3.1's piecewise scaling (low
    frequencies / factor, high kept, a smooth ramp between, the bands set by
    `low_freq_factor`, `high_freq_factor` and `original_max_position_embeddings`).
    ``yarn``: YaRN's per-frequency ramp between interpolation and extrapolation
    (`beta_fast`, `beta_slow`) and an attention factor that multiplies cos and sin.
    """

    #: "none", "linear", "llama3" or "yarn"
    kind: str = "none"
    #: context stretch factor (>= 1); must stay 1 for kind "none"
    factor: float = 1.0
    #: llama3 / yarn: the context length of pretraining, tokens
    original_max_position_embeddings: int | None = None
    #: llama3: wavelengths above original/low_freq_factor are divided by `factor`
    low_freq_factor: float = 1.0
    #: llama3: wavelengths below original/high_freq_factor are kept
    high_freq_factor: float = 4.0
    #: yarn: rotations at which the ramp starts extrapolating (HF default 32)
    beta_fast: float = 32.0
    #: yarn: rotations below which frequencies are fully interpolated (HF default 1)
    beta_slow: float = 1.0
    #: yarn: multiplier of cos and sin; null: ``0.1 * ln(factor) + 1`` (or the mscale ratio below)
    attention_factor: float | None = None
    #: yarn: when both mscale and mscale_all_dim are set, attention_factor defaults to their mscale ratio
    mscale: float | None = None
    mscale_all_dim: float | None = None
    #: yarn: round the correction range to whole channel pairs (HF default true)
    truncate: bool = True

    def __post_init__(self) -> None:
        if self.kind not in ROPE_SCALING_KINDS:
            raise ModelConfigError(f"model.rope_scaling.kind={self.kind!r} is not supported; "
                                   f"choose one of {list(ROPE_SCALING_KINDS)}")
        if isinstance(self.factor, bool) or not isinstance(self.factor, (int, float)) or self.factor < 1:
            raise ModelConfigError(f"model.rope_scaling.factor={self.factor!r} must be a number >= 1")
        if self.kind == "none" and self.factor != 1:
            raise ModelConfigError(f"model.rope_scaling.factor={self.factor!r} has no effect with kind='none'; "
                                   "set model.rope_scaling.kind to linear, llama3 or yarn, or factor=1")
        original = self.original_max_position_embeddings
        if self.kind in ("llama3", "yarn") and (isinstance(original, bool) or not isinstance(original, int)
                                                or original < 1):
            raise ModelConfigError(f"model.rope_scaling.original_max_position_embeddings={original!r}: "
                                   f"kind={self.kind!r} needs the pretraining context length (an integer >= 1)")
        if self.kind == "llama3" and not 0 < self.low_freq_factor < self.high_freq_factor:
            raise ModelConfigError(
                f"model.rope_scaling low_freq_factor={self.low_freq_factor!r}, high_freq_factor="
                f"{self.high_freq_factor!r}: llama3 needs 0 < low_freq_factor < high_freq_factor")
        for name in ("beta_fast", "beta_slow", "attention_factor", "mscale", "mscale_all_dim"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0):
                raise ModelConfigError(f"model.rope_scaling.{name}={value!r} must be a positive number (or null)")


@dataclass
class ModelConfig:
    """Shape of the decoder. Units: counts, except `rope_theta` (RoPE base) and `norm_eps`."""

    #: preset name this config came from (informational; "custom" when hand-made)
    name: str = "tiny"
    #: vocabulary size; must cover the tokenizer's ids
    vocab_size: int = 257
    #: model width (hidden size)
    dim: int = 64
    #: number of decoder blocks
    n_layers: int = 2
    #: query heads
    n_heads: int = 4
    #: key/value heads (GQA); must divide n_heads
    n_kv_heads: int = 2
    #: SwiGLU hidden width
    ffn_dim: int = 128
    #: RoPE base frequency
    rope_theta: float = 10000.0
    #: RMSNorm epsilon
    norm_eps: float = 1e-5
    #: standard deviation of the normal initialisation of every weight matrix
    init_std: float = 0.02
    #: RoPE frequency scaling for context extension (kind "none": plain RoPE)
    rope_scaling: RopeScaling = field(default_factory=RopeScaling)
    #: the output head shares the input embedding's matrix (HF tie_word_embeddings)
    tie_embeddings: bool = False
    #: q, k and v projections carry biases (Qwen2); o and the MLP never do
    qkv_bias: bool = False
    #: local Hugging Face model directory (config.json + safetensors). When set, the shape fields,
    #: norm_eps, init_std, tie_embeddings, qkv_bias and (with rope_from_hf) the RoPE fields are REPLACED by
    #: the checkpoint's (longctx.model.hf_config), and training starts from its weights
    hf_path: str | None = None
    #: with hf_path: true takes rope_theta and rope_scaling from the checkpoint; false keeps this group's
    #: values (context extension: raise rope_theta or set rope_scaling for the longer context)
    rope_from_hf: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.rope_scaling, dict):
            self.rope_scaling = RopeScaling(**self.rope_scaling)
        if self.hf_path is not None:
            from longctx.model.hf_config import apply_hf_config

            apply_hf_config(self)
        for field in ("vocab_size", "dim", "n_layers", "n_heads", "n_kv_heads", "ffn_dim"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ModelConfigError(f"model.{field}={value!r} must be a positive integer")
        if self.dim % self.n_heads:
            raise ModelConfigError(
                f"model.dim={self.dim} is not divisible by model.n_heads={self.n_heads}; "
                f"pick n_heads among the divisors of dim (e.g. {_divisor_near(self.dim, self.n_heads)})"
            )
        if self.n_heads % self.n_kv_heads:
            raise ModelConfigError(
                f"model.n_heads={self.n_heads} is not a multiple of model.n_kv_heads={self.n_kv_heads} (GQA); "
                f"pick n_kv_heads among the divisors of n_heads (e.g. {_divisor_near(self.n_heads, self.n_kv_heads)})"
            )
        if self.head_dim % 2:
            raise ModelConfigError(
                f"model head_dim = dim / n_heads = {self.dim}/{self.n_heads} = {self.head_dim} is odd; "
                "RoPE rotates pairs of channels, so choose dim and n_heads with an even head_dim"
            )
        for field in ("rope_theta", "norm_eps", "init_std"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ModelConfigError(f"model.{field}={value!r} must be a positive number")

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    @property
    def kv_dim(self) -> int:
        """Width of the key (or value) projection: n_kv_heads * head_dim."""
        return self.n_kv_heads * self.head_dim

    def num_parameters(self) -> int:
        """Parameter count (input embedding, and the output head unless tied)."""
        embeddings = (1 if self.tie_embeddings else 2) * self.vocab_size * self.dim
        return embeddings + self.n_layers * self.layer_parameters() + self.dim

    def layer_parameters(self) -> int:
        """Parameters of one block: q, k, v, o projections (+ q/k/v biases), SwiGLU (3 matrices), 2 norms."""
        biases = self.dim + 2 * self.kv_dim if self.qkv_bias else 0
        return self._layer_matrix_parameters() + biases + 2 * self.dim

    def _layer_matrix_parameters(self) -> int:
        """Entries of one block's weight matrices: q, k, v, o and the three SwiGLU matrices."""
        return 2 * self.dim * self.dim + 2 * self.dim * self.kv_dim + 3 * self.dim * self.ffn_dim

    def matmul_parameters(self) -> int:
        """Parameters that take part in a matmul per token: every block's matrices and the output head."""
        return self.n_layers * self._layer_matrix_parameters() + self.vocab_size * self.dim

    @classmethod
    def preset(cls, name: str, **overrides) -> "ModelConfig":
        """The preset `name` (a file of the Hydra group `configs/model/`), with fields replaced by `overrides`."""
        names = preset_names()
        if name not in names:
            raise ModelConfigError(f"model preset {name!r} is unknown; choose one of {names}")
        values = yaml.safe_load((files("longctx.configs") / "model" / f"{name}.yaml").read_text())
        return cls(**{**values, **overrides})


def preset_names() -> list[str]:
    """Names of the model presets: the files of `configs/model/` (tiny, small, llama3-8b, llama3-70b)."""
    return sorted(entry.name[:-5] for entry in (files("longctx.configs") / "model").iterdir()
                  if entry.name.endswith(".yaml"))


def _divisor_near(n: int, wanted: int) -> int:
    return min((d for d in range(1, n + 1) if n % d == 0), key=lambda d: (abs(d - wanted), d))

