"""ModelConfig: the shape of a Llama-style decoder, validated, with named presets.

Presets are the files of the Hydra group ``configs/model/`` (one source for
Hydra and Python): ``tiny`` (CPU tests, ~0.1M parameters), ``small``, and the
Llama-3 shapes ``llama3-8b`` and ``llama3-70b``, used here only for FLOPs and
memory accounting.
"""
from __future__ import annotations

from dataclasses import dataclass
from importlib.resources import files

import yaml


class ModelConfigError(ValueError):
    """A model shape that cannot work; the message names the field, the value and the fix."""


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

    def __post_init__(self) -> None:
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
        """Parameter count (untied input embedding and output head included)."""
        return 2 * self.vocab_size * self.dim + self.n_layers * self.layer_parameters() + self.dim

    def layer_parameters(self) -> int:
        """Parameters of one block: q, k, v, o projections, SwiGLU (3 matrices), 2 norms."""
        attention = 2 * self.dim * self.dim + 2 * self.dim * self.kv_dim
        return attention + 3 * self.dim * self.ffn_dim + 2 * self.dim

    def matmul_parameters(self) -> int:
        """Parameters that take part in a matmul per token: every block's matrices and the output head."""
        return self.n_layers * (self.layer_parameters() - 2 * self.dim) + self.vocab_size * self.dim

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

