"""Least-squares fits of measured times (torch-free).

Fits are non-negative (scipy's NNLS) and minimise the *relative* error of each
sample, so short and long samples weigh alike: a profile predicts 100-token and
8K-token sequences equally well.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy.optimize import nnls


def fit_nonnegative(columns: Sequence[Sequence[float]], times: Sequence[float]) -> list[float]:
    """Coefficients ``x >= 0`` minimising ``sum_i ((columns[:, i] @ x) / times[i] - 1)^2``.

    `columns`: one sequence of regressor values per coefficient, each as long as `times` (> 0).
    """
    t = np.asarray(times, dtype=np.float64)
    design = np.column_stack([np.asarray(c, dtype=np.float64) for c in columns])
    if design.shape[0] != len(t) or len(t) < design.shape[1]:
        raise ValueError(f"fit_nonnegative: {len(t)} samples for {design.shape[1]} coefficients "
                         f"(regressors of length {design.shape[0]}); measure at least as many points as coefficients")
    if not np.all(t > 0):
        raise ValueError(f"fit_nonnegative: times must be > 0, got {t.tolist()}")
    scale = np.abs(design).max(axis=0)
    scale[scale == 0] = 1.0
    solution, _ = nnls(design / scale / t[:, None], np.ones_like(t))
    return (solution / scale).tolist()


def fit_quadratic(tokens: Sequence[float], times_ms: Sequence[float]) -> list[float]:
    """``[a ms, b ms/token, c ms/token^2]`` of ``t = a + b*s + c*s^2`` over samples (s tokens, t ms)."""
    s = np.asarray(tokens, dtype=np.float64)
    return fit_nonnegative([np.ones_like(s), s, s * s], times_ms)


def fit_link(message_bytes: Sequence[float], times_s: Sequence[float]) -> tuple[float, float]:
    """(latency us, bandwidth GB/s) of ``t = latency + bytes / bandwidth`` over samples (bytes, seconds)."""
    b = np.asarray(message_bytes, dtype=np.float64)
    latency_s, seconds_per_byte = fit_nonnegative([np.ones_like(b), b], times_s)
    if seconds_per_byte * b.max() <= 0.01 * max(times_s):  # the size term explains < 1% of the largest sample
        raise ValueError(f"fit_link: the times {list(times_s)} do not grow with the message size "
                         f"{b.tolist()}; measure larger messages")
    return latency_s * 1e6, 1.0 / seconds_per_byte / 1e9


def relative_errors(predicted: Sequence[float], measured: Sequence[float]) -> list[float]:
    """``|predicted / measured - 1|`` per sample."""
    return [abs(p / m - 1.0) for p, m in zip(predicted, measured)]
