"""Activation offload and saved-tensor accounting through `torch.autograd.graph.saved_tensors_hooks`.

`SavedTensorHooks(mode, checkpointing, device, parameters, layers_in_flight)`
gives the decoder one hooks context per layer (`scope(key)`, plugged into
`ActivationMemory.scope`) and wraps each micro-batch (`micro_batch()`).
Every tensor autograd saves inside a scope goes through `_pack`:

* parameters (and views of them) are returned as they are, not counted;
* the tensors of an offloaded layer are copied into the host store and only a
  handle stays in the graph: mode "all" offloads every layer; "checkpoints"
  offloads the decoder blocks' layer checkpoints (with checkpointing on, all a
  block saves is its checkpoint; see `longctx.model.activation_checkpoint`);
* everything else stays resident; all of it is counted per layer in the
  `SavedTensorAccounting` (`longctx.runtime.memory_accounting`).

Copies. On CUDA the host store is pinned memory and copies run on a side
stream: a tensor's copy-out starts when it is saved (after the kernels that
produced it, so the copy overlaps the layer's remaining compute and the next
layers'), and when a layer's scope closes while more than `layers_in_flight`
layers still have copies pending, the oldest is waited for and its device
tensors released. In backward, the first unpack of layer i's tensors starts
the prefetch of the `layers_in_flight - 1` layers below it (the next ones
backward needs), so layer i-1's copy-in overlaps layer i's backward; an
unpack waits on its tensor's copy event on the compute stream. On CPU the same
bookkeeping runs with synchronous copies into a separate host buffer and back
(into a fresh tensor), so ordering, counting and exactness are tested without
a GPU; every copy second is then exposed.

Exposed copy seconds: on CPU all copy time; on CUDA the host time blocked
waiting for a copy event (the in-flight bound, or a prefetch not finished when
backward needs it), an upper bound of the GPU time the copies were not hidden.
"""
from __future__ import annotations

import contextlib
import time
import weakref
from dataclasses import dataclass, field
from typing import Iterable, Iterator

import torch

from longctx.runtime.memory_accounting import LayerKey, SavedTensorAccounting

OFFLOAD_MODES = ("none", "checkpoints", "all")


@dataclass
class _Offloaded:
    """What the graph holds instead of an offloaded tensor: its host copy and, once prefetched, a device copy."""

    layer: LayerKey
    host: torch.Tensor
    device: torch.device
    #: the device copy made by a prefetch, handed to autograd at unpack, dropped when backward leaves the layer
    fetched: torch.Tensor | None = None
    #: CUDA: the event after which `fetched` is valid
    ready: object = None


@dataclass
class _LayerStore:
    """One layer's offloaded tensors in one pass."""

    handles: list[_Offloaded] = field(default_factory=list)
    #: dedupe of saves of the same tensor while the layer is open: tensor key -> handle
    open_keys: dict[tuple, _Offloaded] = field(default_factory=dict)
    #: the offloaded device tensors, kept alive until the layer's copy-out completes (CUDA: its event; CPU:
    #: the in-flight bound) so that dedupe keys stay unique and the copies read valid memory
    originals: list[torch.Tensor] = field(default_factory=list)
    copied_out: object = None
    prefetched: bool = False


def _tensor_key(t: torch.Tensor) -> tuple:
    return (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), tuple(t.stride()), t.dtype)


class SavedTensorHooks:
    """Per-layer saved-tensor hooks that offload and count (see the module docstring)."""

    def __init__(self, mode: str, checkpointing: str, device: torch.device, parameters: Iterable[torch.Tensor],
                 layers_in_flight: int = 2, accounting: SavedTensorAccounting | None = None) -> None:
        if mode not in OFFLOAD_MODES:
            raise ValueError(f"SavedTensorHooks: mode={mode!r}; choose one of {OFFLOAD_MODES}")
        if mode == "checkpoints" and checkpointing == "none":
            raise ValueError("SavedTensorHooks: mode='checkpoints' needs layer checkpoints (checkpointing full or "
                             "selective); use mode='all' or turn checkpointing on")
        if layers_in_flight < 1:
            raise ValueError(f"SavedTensorHooks: layers_in_flight={layers_in_flight} must be >= 1")
        self.mode, self.checkpointing, self.device = mode, checkpointing, device
        self.layers_in_flight = layers_in_flight
        self.accounting = accounting if accounting is not None else SavedTensorAccounting()
        self._parameters = list(parameters)
        self._parameter_storages: set[int] = set()
        self._cuda = device.type == "cuda"
        self._side = torch.cuda.Stream(device) if self._cuda else None
        self._order: list[LayerKey] = []
        self._stores: dict[LayerKey, _LayerStore] = {}
        self._pending: list[_LayerStore] = []
        self._resident: dict[int, weakref.ref] = {}
        #: layer keys in the order their tensors were first unpacked (backward order), for tests and debugging
        self.unpack_order: list[LayerKey] = []
        #: most layers with copy-outs in flight at once since construction (bounded by layers_in_flight)
        self.most_layers_in_flight = 0

    def offloads(self, layer: LayerKey) -> bool:
        """Whether the tensors `layer` saves go to the host store."""
        return self.mode == "all" or (self.mode == "checkpoints" and isinstance(layer, int))

    @contextlib.contextmanager
    def micro_batch(self) -> Iterator[None]:
        """Wrap one micro-batch's forward AND backward: a new accounting pass, host store emptied after."""
        self.accounting.start_pass()
        # read at every micro-batch: an optimizer may have replaced the parameters' storage (e.g. a bf16 cast)
        self._parameter_storages = {p.untyped_storage().data_ptr() for p in self._parameters}
        self._order, self._stores, self._pending, self._resident = [], {}, [], {}
        self.unpack_order = []
        try:
            yield
        finally:
            self._wait_all()
            self._order, self._stores, self._resident = [], {}, {}

    def scope(self, layer: LayerKey) -> contextlib.AbstractContextManager:
        """The saved-tensor hooks of one layer (an `ActivationMemory.scope`)."""
        return _LayerScope(self, layer)

    # -- forward -------------------------------------------------------------------------------------

    def _open(self, layer: LayerKey) -> None:
        if layer not in self._stores:
            self._order.append(layer)
            self._stores[layer] = _LayerStore()

    def _close(self, layer: LayerKey) -> None:
        store = self._stores[layer]
        store.open_keys.clear()
        if store.handles:
            self._pending.append(store)
        while len(self._pending) > self.layers_in_flight:
            self._finish_copy_out(self._pending.pop(0))
        self.most_layers_in_flight = max(self.most_layers_in_flight, len(self._pending))

    def _pack(self, layer: LayerKey, t: torch.Tensor) -> object:
        storage = t.untyped_storage()
        if storage.data_ptr() in self._parameter_storages or t.device != self.device:
            return t
        if not self.offloads(layer):
            ptr = storage.data_ptr()
            alive = self._resident.get(ptr)
            if alive is None or alive() is None:
                self._resident[ptr] = weakref.ref(t)
                self.accounting.record(layer, storage.nbytes(), offloaded=False)
            return t
        store = self._stores[layer]
        key = _tensor_key(t)
        if key in store.open_keys:
            return store.open_keys[key]
        handle = _Offloaded(layer, self._copy_out(t, store), t.device)
        store.originals.append(t)  # alive while in flight: keeps the dedupe keys unique, the CUDA copy valid
        store.handles.append(handle)
        store.open_keys[key] = handle
        self.accounting.record(layer, t.numel() * t.element_size(), offloaded=True)
        return handle

    def _copy_out(self, t: torch.Tensor, store: _LayerStore) -> torch.Tensor:
        if not self._cuda:
            started = time.perf_counter()
            host = torch.empty_like(t).copy_(t)
            self.accounting.exposed_copy_s += time.perf_counter() - started
            return host
        host = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
        self._side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(self._side):
            host.copy_(t, non_blocking=True)
            store.copied_out = torch.cuda.Event()
            store.copied_out.record(self._side)
        return host

    def _finish_copy_out(self, store: _LayerStore) -> None:
        if store.copied_out is not None:
            self._wait(store.copied_out)
            store.copied_out = None
        store.originals.clear()

    def _wait(self, event) -> None:
        if not event.query():
            started = time.perf_counter()
            event.synchronize()
            self.accounting.exposed_copy_s += time.perf_counter() - started

    def _wait_all(self) -> None:
        for store in self._pending:
            self._finish_copy_out(store)
        self._pending = []

    # -- backward ------------------------------------------------------------------------------------

    def _unpack(self, packed: object) -> torch.Tensor:
        if not isinstance(packed, _Offloaded):
            return packed
        layer = packed.layer
        if layer not in self.unpack_order:
            for done in self.unpack_order:  # backward left those layers: drop their device copies
                for handle in self._stores[done].handles:
                    handle.fetched = None
            self.unpack_order.append(layer)
            self._prefetch_from(layer)
        if packed.fetched is None:
            self._fetch(packed)
        if packed.ready is not None:
            current = torch.cuda.current_stream(self.device)
            current.wait_event(packed.ready)
            packed.fetched.record_stream(current)
            packed.ready = None
        return packed.fetched

    def _prefetch_from(self, layer: LayerKey) -> None:
        """Copy in `layer` and start the copy-in of the layers below it, `layers_in_flight` layers in all."""
        below = [key for key in reversed(self._order[:self._order.index(layer) + 1]) if self._stores[key].handles]
        for key in below[:self.layers_in_flight]:
            store = self._stores[key]
            if not store.prefetched:
                store.prefetched = True
                for handle in store.handles:
                    self._fetch(handle)

    def _fetch(self, handle: _Offloaded) -> None:
        """Start (CUDA) or do (CPU) the copy of one handle's host tensor to the device."""
        store = self._stores[handle.layer]
        if store.copied_out is not None:
            self._finish_copy_out(store)
            self._pending = [pending for pending in self._pending if pending is not store]
        if self._cuda:
            with torch.cuda.stream(self._side):
                handle.fetched = handle.host.to(handle.device, non_blocking=True)
                handle.ready = torch.cuda.Event()
                handle.ready.record(self._side)
        else:
            started = time.perf_counter()
            handle.fetched = handle.host.clone()
            self.accounting.exposed_copy_s += time.perf_counter() - started
        self.accounting.prefetched_bytes += handle.host.numel() * handle.host.element_size()


class _LayerScope:
    """`saved_tensors_hooks` bound to one layer, plus the layer's open/close bookkeeping."""

    def __init__(self, hooks: SavedTensorHooks, layer: LayerKey) -> None:
        self._hooks, self._layer = hooks, layer
        self._inner = torch.autograd.graph.saved_tensors_hooks(lambda t: hooks._pack(layer, t), hooks._unpack)

    def __enter__(self) -> None:
        self._hooks._open(self._layer)
        self._inner.__enter__()

    def __exit__(self, *exc: object) -> None:
        self._inner.__exit__(*exc)
        self._hooks._close(self._layer)
