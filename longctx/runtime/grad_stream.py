"""Gradients streamed off the device during backward into fp32 host accumulators: `GradientStream`.

With ``memory.optimizer_offload`` the gradients are not kept on the device for
the step. As soon as autograd has accumulated a parameter's gradient of one
micro-batch into ``param.grad`` (`Tensor.register_post_accumulate_grad_hook`),
the hook adds it into that parameter's fp32 host accumulator `[numel]` and
drops ``param.grad``; so the device holds only the gradients autograd produces
at once (one checkpointed block's, or the embedding's / head's), never the
model's. After the step's last wave the world reduction reads the
accumulators (`longctx.runtime.zero.ShardedAdamW.synchronize_gradients`);
since every rank's accumulator is the sum of its own micro-batches' gradients
in the order they ran, it equals what ``param.grad`` would have accumulated in
fp32, bit for bit, whatever number of micro-batches each rank runs.

Copies. CUDA: the hook copies the gradient into a slice of a pinned staging
ring on a side stream (ordered after the compute stream's work that produced
it) and keeps the device gradient alive until the copy's event; when the ring
is full, and at `drain`, the pending copies are waited for and added into
the accumulators on the CPU. The ring holds `ring_bytes` (`ShardedAdamW`: the
largest layer's gradient bytes), so at most two layers' gradients are on the
device at once: the one autograd just produced and one whose copies are in
flight. CPU: the "device" is host memory too; the hook adds the gradient into
the accumulator directly, a separate tensor, so the bookkeeping and
exactness are the same as on a GPU.

Bookkeeping (for tests): `peak_device_bytes`, the most bytes of gradients
handed to the stream and still alive on the device at one time.
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from longctx.runtime.optimizer_offload import new_store_tensor

#: byte alignment of the staging ring's slices
_ALIGN = 16


def layer_parameter_bytes(model: nn.Module) -> list[int]:
    """Parameter bytes of each layer of `model`: its direct children, a `nn.ModuleList` counting per element,
    and the model's own parameters (outside any child) as one more layer."""
    groups: list[list[nn.Parameter]] = [list(model.parameters(recurse=False))]
    for child in model.children():
        groups.extend(list(m.parameters()) for m in (child if isinstance(child, nn.ModuleList) else [child]))
    return [sum(p.numel() * p.element_size() for p in group) for group in groups]


@dataclass
class _Pending:
    """One gradient copy in flight (CUDA): the device gradient, its staging slice, the accumulator, the event."""

    gradient: torch.Tensor
    staged: torch.Tensor
    accumulator: torch.Tensor
    copied: torch.cuda.Event


class GradientStream:
    """fp32 host accumulators for `params`, filled by post-accumulate-grad hooks (see the module docstring).

    Per step: `zero()` before the first micro-batch, `drain()` before reading `accumulators`.
    `ring_bytes`: the CUDA staging ring's size (at least the largest parameter's gradient bytes; a layer's).
    """

    def __init__(self, params: Sequence[nn.Parameter], ring_bytes: int) -> None:
        self.params = list(params)
        largest = max((p.numel() * p.element_size() for p in self.params), default=0)
        if ring_bytes < largest:
            raise ValueError(f"GradientStream: ring_bytes={ring_bytes} is below the largest gradient ({largest} "
                             "bytes); give at least that (ShardedAdamW gives the largest layer's)")
        #: fp32 `[numel]` host accumulator of every parameter (pinned when CUDA is present)
        self.accumulators = [new_store_tensor(torch.zeros(p.numel()), torch.device("cpu")) for p in self.params]
        self.device = self.params[0].device if self.params else torch.device("cpu")
        self._cuda = self.device.type == "cuda"
        self._ring = (torch.empty(ring_bytes, dtype=torch.uint8, pin_memory=True) if self._cuda else None)
        self._ring_used = 0
        self._side = torch.cuda.Stream(self.device) if self._cuda else None
        self._pending: list[_Pending] = []
        self._live: list[tuple[weakref.ref, int]] = []
        #: most bytes of gradients handed to the stream alive on the device at once, since construction
        self.peak_device_bytes = 0
        for i, p in enumerate(self.params):
            p.register_post_accumulate_grad_hook(self._take(i))

    def _take(self, index: int):
        def hook(param: nn.Parameter) -> None:
            gradient = param.grad
            if gradient is None:  # autograd calls the hook also when a backward returned no gradient for it
                return
            param.grad = None
            self._track(gradient)
            if self._cuda:
                self._stage(gradient, self.accumulators[index])
            else:
                self.accumulators[index].add_(gradient.reshape(-1))
        return hook

    def _track(self, gradient: torch.Tensor) -> None:
        """Count the device gradients handed over that are still alive, with `gradient`."""
        self._live = [(ref, size) for ref, size in self._live if ref() is not None]
        self._live.append((weakref.ref(gradient), gradient.numel() * gradient.element_size()))
        self.peak_device_bytes = max(self.peak_device_bytes, sum(size for _, size in self._live))

    def _stage(self, gradient: torch.Tensor, accumulator: torch.Tensor) -> None:
        """CUDA: queue the copy of `gradient` into the ring on the side stream (draining a full ring first)."""
        size = gradient.numel() * gradient.element_size()
        if self._ring_used + size > self._ring.numel():
            self.drain()
        staged = self._ring[self._ring_used:self._ring_used + size].view(gradient.dtype)
        self._ring_used += -(-size // _ALIGN) * _ALIGN  # the next slice starts aligned for any dtype's view
        self._side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(self._side):
            staged.copy_(gradient.reshape(-1), non_blocking=True)
            copied = torch.cuda.Event()
            copied.record(self._side)
        self._pending.append(_Pending(gradient, staged, accumulator, copied))

    def drain(self) -> None:
        """Finish every pending copy and add it into its accumulator (no-op on CPU)."""
        for pending in self._pending:
            pending.copied.synchronize()
            pending.accumulator.add_(pending.staged)
        self._pending, self._ring_used = [], 0

    def zero(self) -> None:
        """Start a step: every accumulator to zero."""
        self.drain()
        for accumulator in self.accumulators:
            accumulator.zero_()

    def host_bytes(self) -> int:
        """Bytes of the fp32 accumulators (and the CUDA staging ring) in host memory."""
        ring = self._ring.numel() if self._ring is not None else 0
        return sum(a.numel() * a.element_size() for a in self.accumulators) + ring