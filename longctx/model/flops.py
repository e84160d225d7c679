"""Training FLOPs of a step, and MFU.

Convention (stated in every metric that uses it):

* matmuls: ``6 * N * tokens`` with N = `ModelConfig.matmul_parameters()` (every
  block's weight matrices plus the output head; the embedding lookup and the
  norms are not matmuls): 2 FLOPs per multiply-add forward, twice that backward.
* attention: per layer, causal, per document of s tokens, forward ``2 * s^2 * d``
  (QK^T and PV, each ``2 * s^2 * d`` non-causal, halved by the causal mask) with
  ``d = n_heads * head_dim``; backward twice the forward. Total
  ``6 * n_layers * d * sum_i s_i^2`` over the step's documents (sum of squares,
  never the square of the packed length).
* recomputation is not counted (model FLOPs, not hardware FLOPs).
"""
from __future__ import annotations

from typing import Iterable

from longctx.model.config import ModelConfig

FLOPS_CONVENTION = "6*N_matmul*tokens + 6*layers*heads*head_dim*sum(s_i^2) (causal, fwd+bwd, no recompute)"


def step_flops(config: ModelConfig, lengths: Iterable[int]) -> float:
    """Model FLOPs of one training step (forward + backward) over documents of `lengths` tokens."""
    lengths = [int(s) for s in lengths]
    matmul = 6.0 * config.matmul_parameters() * sum(lengths)
    attention = 6.0 * config.n_layers * config.dim * sum(s * s for s in lengths)
    return matmul + attention


def mfu(flops: float, seconds: float, ranks: int, peak_flops_per_rank: float) -> float:
    """Model FLOPs utilisation: ``flops / (seconds * ranks * peak)``; 0 when time or peak is 0."""
    if seconds <= 0 or peak_flops_per_rank <= 0 or ranks <= 0:
        return 0.0
    return flops / (seconds * ranks * peak_flops_per_rank)
