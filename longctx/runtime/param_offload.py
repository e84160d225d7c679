"""Parameter offload: device weights live in host memory and are materialised only while a module uses them.

With ``memory.param_offload`` every parameter of an offloaded module (each
decoder block, the embedding, and the final norm and head when the loss is
tiled) keeps a host copy in the weights' dtype (pinned when CUDA is present),
and its device storage is released (``untyped_storage().resize_(0)``, as
FSDP1 does; shape, dtype and the Parameter object are kept, so autograd's
graph, the optimizer and the gradient hooks see the same tensor).
`ParamResidency.weights(module)` is the `ActivationMemory.weights` context
the decoder wraps around every use of a module's weights (forward, recompute,
backward): on entry the storage is re-allocated and filled from the host copy
(an asynchronous copy on the compute stream on CUDA), on exit it is released
again. Uses nest and may share parameters (tied embedding and head): each
parameter is counted in and out.

Only modules whose every use is wrapped can be offloaded: the checkpointed
block (which never saves its weights for backward) and the tiled head+loss
do wrap forward and backward; the embedding's backward never reads its
weight; an untiled head's autograd graph reads its weight in backward without
the context, so it (and a weight tied to it) stays resident.

Prefetch: the order in which modules enter `weights` in one micro-batch
(embedding, blocks forward, head, head and blocks backward) is recorded, and
in the next micro-batch entering a module starts materialising the one that
followed it last time: on CUDA its copy runs on a side stream (storage
allocated on the compute stream, the copy ordered after the compute stream's
work so far, the compute stream waiting for the copy's event before using
it), overlapping the current module's compute; on CPU the copy is simply done
earlier. So at most two modules' weights are on the device at once. A
prefetched module still unused when the micro-batch ends (`micro_batch`) is
released; nothing prefetched outlives a micro-batch, so the optimizer's
refresh of the host copies never races a copy.

The optimizer writes updated weights into the host copies (`home`, set as
`ShardedAdamW.weights_home`), which is all a refresh needs. Checkpoints save
and load the model through `all_weights()`, which materialises everything
for the duration and writes loaded values back to the host copies.

Bookkeeping: `device_bytes()`, the bytes of offloaded parameters resident on
the device now (0 outside every `weights` context and micro-batch), and
`peak_device_bytes`.
"""
from __future__ import annotations

import contextlib
from typing import Iterable, Iterator, Sequence

import torch
from torch import nn

from longctx.runtime.config import MemoryConfig
from longctx.runtime.optim import StepOptimizer


def _storage_bytes(param: torch.Tensor) -> int:
    return param.numel() * param.element_size()


class ParamResidency:
    """Host copies of the parameters of `modules` (except `resident` ones) and their device residency."""

    def __init__(self, modules: Sequence[nn.Module], resident: Iterable[nn.Parameter] = ()) -> None:
        keep = {id(p) for p in resident}
        self._offloaded: dict[int, nn.Parameter] = {}
        for module in modules:
            for param in module.parameters():
                if id(param) not in keep:
                    self._offloaded[id(param)] = param
        pin = torch.cuda.is_available()
        #: id(param) -> host copy (the weights' dtype and shape)
        self._host = {key: torch.empty(p.shape, dtype=p.dtype, pin_memory=pin).copy_(p.detach())
                      for key, p in self._offloaded.items()}
        self._users = dict.fromkeys(self._offloaded, 0)
        #: most bytes of offloaded parameters materialised at once since construction
        self.peak_device_bytes = 0
        #: modules in the order they entered `weights` in the last micro-batch, and in this one so far
        self._last_order: list[nn.Module] = []
        self._order: list[nn.Module] = []
        #: id(param) -> the CUDA event after which its prefetched weights are valid (None on CPU)
        self._prefetched: dict[int, object] = {}
        cuda = [p.device for p in self._offloaded.values() if p.device.type == "cuda"]
        self._side = torch.cuda.Stream(cuda[0]) if cuda else None
        for param in self._offloaded.values():
            param.untyped_storage().resize_(0)

    def offloaded(self, param: nn.Parameter) -> bool:
        return id(param) in self._offloaded

    def home(self, param: nn.Parameter) -> torch.Tensor:
        """Where `param`'s current weights are kept: its host copy when offloaded, else `param` itself."""
        return self._host.get(id(param), param)

    def device_bytes(self) -> int:
        """Bytes of offloaded parameters resident on the device now."""
        return sum(p.untyped_storage().nbytes() for p in self._offloaded.values())

    def host_bytes(self) -> int:
        """Bytes of the host copies."""
        return sum(_storage_bytes(h) for h in self._host.values())

    def _acquire(self, params: Iterable[nn.Parameter]) -> list[nn.Parameter]:
        taken = []
        for param in params:
            key = id(param)
            if key not in self._offloaded:
                continue
            if key in self._prefetched:
                ready = self._prefetched.pop(key)
                if ready is not None:
                    torch.cuda.current_stream(param.device).wait_event(ready)
            elif self._users[key] == 0:
                param.untyped_storage().resize_(_storage_bytes(param))
                param.data.copy_(self._host[key], non_blocking=True)  # `.data`: no version bump for autograd
            self._users[key] += 1
            taken.append(param)
        self.peak_device_bytes = max(self.peak_device_bytes, self.device_bytes())
        return taken

    def _release(self, params: Iterable[nn.Parameter]) -> None:
        for param in params:
            key = id(param)
            self._users[key] -= 1
            if self._users[key] == 0:
                param.untyped_storage().resize_(0)

    def _prefetch(self, module: nn.Module) -> None:
        """Start materialising `module`'s released weights ahead of their use (see the module docstring)."""
        params = [p for p in module.parameters()
                  if id(p) in self._offloaded and self._users[id(p)] == 0 and id(p) not in self._prefetched]
        for param in params:
            param.untyped_storage().resize_(_storage_bytes(param))  # allocated in the compute stream's order
        ready = None
        if self._side is not None and params:
            self._side.wait_stream(torch.cuda.current_stream(self._side.device))
            with torch.cuda.stream(self._side):
                for param in params:
                    param.data.copy_(self._host[id(param)], non_blocking=True)
                ready = torch.cuda.Event()
                ready.record(self._side)
        else:
            for param in params:
                param.data.copy_(self._host[id(param)])
        self._prefetched.update(dict.fromkeys(map(id, params), ready))
        self.peak_device_bytes = max(self.peak_device_bytes, self.device_bytes())

    def _next_of(self, module: nn.Module) -> nn.Module | None:
        """The module that followed `module`'s current use in the last micro-batch (None: unknown)."""
        position = len(self._order)
        if position < len(self._last_order) and self._last_order[position - 1] is module:
            return self._last_order[position]
        return None

    @contextlib.contextmanager
    def micro_batch(self) -> Iterator[None]:
        """Wrap one micro-batch's forward and backward: prefetches follow the last micro-batch's order and
        end with it."""
        self._order = []
        try:
            yield
        finally:
            for key, ready in self._prefetched.items():
                param = self._offloaded[key]
                if ready is not None:
                    torch.cuda.current_stream(param.device).wait_event(ready)  # no reuse before the copy ends
                param.untyped_storage().resize_(0)
            self._prefetched = {}
            self._last_order = self._order

    @contextlib.contextmanager
    def weights(self, module: nn.Module) -> Iterator[None]:
        """`module`'s offloaded weights on the device for the duration (an `ActivationMemory.weights`)."""
        taken = self._acquire(module.parameters())  # each parameter once, shared ones included
        self._order.append(module)
        following = self._next_of(module)
        if following is not None:
            self._prefetch(following)
        try:
            yield
        finally:
            self._release(taken)

    @contextlib.contextmanager
    def all_weights(self) -> Iterator[None]:
        """Every offloaded parameter on the device for the duration (checkpoint save and load); what is in
        them at the end (a loaded checkpoint) is written back to the host copies."""
        taken = self._acquire(self._offloaded.values())
        try:
            yield
        finally:
            for param in taken:
                if self._users[id(param)] == 1:
                    self._host[id(param)].copy_(param.detach())
            self._release(taken)

    def restore(self) -> None:
        """Make every parameter permanently resident again (the end of training: the model is handed out)."""
        self._acquire(self._offloaded.values())
        self._offloaded, self._host, self._users = {}, {}, {}


def offload_decoder_weights(model: nn.Module, loss_tiled: bool) -> ParamResidency:
    """A `ParamResidency` of a `longctx.model.Decoder`: every block and the embedding; the final norm and head
    too when the loss is tiled (`loss_tiled`), else they (and an embedding tied to the head) stay resident."""
    modules = [*model.blocks, model.embedding]
    resident: list[nn.Parameter] = []
    if loss_tiled:
        modules += [model.norm, model.head]
    else:
        resident += [*model.norm.parameters(), *model.head.parameters()]
    return ParamResidency(modules, resident)


def parameter_offload(model: nn.Module, memory: MemoryConfig, optimizer: StepOptimizer) -> ParamResidency | None:
    """The run's parameter offload (``memory.param_offload``), its host copies refreshed by `optimizer` (a
    `ShardedAdamW`, as the config check guarantees; built before: it casts the weights); None when off."""
    if not memory.param_offload:
        return None
    residency = offload_decoder_weights(model, memory.loss_tile_tokens is not None)
    optimizer.weights_home = residency.home
    return residency


def every_weight_resident(residency: ParamResidency | None) -> contextlib.AbstractContextManager:
    """`residency.all_weights()`, or nothing to do without a parameter offload (checkpoint save and load)."""
    return contextlib.nullcontext() if residency is None else residency.all_weights()


def restore_weights(residency: ParamResidency | None) -> None:
    """Every weight permanently back on the device (no-op without a parameter offload)."""
    if residency is not None:
        residency.restore()
