"""Stop the run on a non-finite loss or gradient before the optimizer step (and so before any checkpoint).

Two checks per step, both collective so that every rank stops at the same step:

- `check_local_values` after the backward, before the gradients are summed:
  every rank's loss share and the L2 norm of its own (unsummed) gradients are
  all-gathered (2 floats per rank); a non-finite one names the step and the
  ranks it came from. This costs one extra pass over the local gradients.
- `check_global_grad_norm` after the sum and clipping: the global norm every
  rank computed (finite local gradients can still overflow when summed).

Either raises `NonFiniteError` on every rank; `longctx train` exits with
`NONFINITE_EXIT` and the message, without a traceback.
"""
from __future__ import annotations

import math
from typing import Iterable

import torch

from longctx.runtime.comm_device import gather_floats

#: exit code of `longctx train` after a non-finite stop
NONFINITE_EXIT = 3


class NonFiniteError(RuntimeError):
    """A non-finite loss or gradient norm; the message names the step and the ranks."""


def _advice(step: int) -> str:
    return (f"stopped before the optimizer step {step}, nothing of step {step} was saved; resume restarts from the "
            "last checkpoint: lower optim.lr or check the data")


def check_local_values(step: int, loss_share: float, gradients: Iterable[torch.Tensor | None]) -> None:
    """Raise NonFiniteError on every rank if any rank's loss share or local gradient norm is non-finite.

    `gradients`: this rank's accumulated, unsummed gradients (`StepOptimizer.local_gradients()`: the
    parameters' ``.grad``, or the host accumulators they streamed into); None counts as zero.
    """
    grads = [g for g in gradients if g is not None]
    grad_norm = float(torch.nn.utils.get_total_norm(grads)) if grads else 0.0
    values = gather_floats([loss_share, grad_norm]).tolist()
    bad_loss = [(rank, loss) for rank, (loss, _) in enumerate(values) if not math.isfinite(loss)]
    bad_grad = [(rank, norm) for rank, (_, norm) in enumerate(values) if not math.isfinite(norm)]
    if not (bad_loss or bad_grad):
        return
    parts = []
    if bad_loss:
        parts.append("loss " + ", ".join(f"{v} on rank {r}" for r, v in bad_loss))
    if bad_grad:
        parts.append("gradient norm " + ", ".join(f"{v} on rank {r}" for r, v in bad_grad))
    raise NonFiniteError(f"non-finite {'; '.join(parts)} at step {step}; {_advice(step)}")


def check_global_grad_norm(step: int, grad_norm: float) -> None:
    """Raise NonFiniteError (on every rank alike: the norm is the same everywhere) if `grad_norm` is not finite."""
    if not math.isfinite(grad_norm):
        raise NonFiniteError(f"non-finite global gradient norm {grad_norm} at step {step} after summing the ranks' "
                             f"finite gradients (overflow, on every rank); {_advice(step)}")
