"""Saved-tensor accounting: the bytes autograd keeps for backward, per layer, counted by the saved-tensor hooks.

This is the measurement the memory model (`longctx.scheduler`, `longctx memory`)
is validated against on CPU. `longctx.runtime.offload.SavedTensorHooks` calls
`record` for every tensor saved for backward inside a decoder scope
(`longctx.model.activation_memory.ActivationMemory.scope`), so the numbers are
what the runtime really kept, whatever the checkpointing / offload / tile
settings. Conventions:

* keys: decoder block index ``0 .. n_layers-1``, ``"embedding"`` (the token
  embedding), ``"head"`` (final norm and output head; with ``loss_tile_tokens``
  also the tiled loss) and ``"loss"`` (the untiled cross-entropy: its fp32
  log-softmax ``[n, vocab]`` and the targets; absent with tiles);
* parameters (and views of them) saved for backward are NOT counted: they are
  parameter bytes, present anyway;
* a storage saved several times counts once per pass: a resident tensor by its
  whole storage (``untyped_storage().nbytes()``), an offloaded one by the bytes
  copied (``numel * element_size``);
* "resident" bytes stay in device memory until backward; "offloaded" bytes
  were moved to the host store (pinned host memory on CUDA, a separate host
  buffer on CPU);
* a pass is one micro-batch's forward + backward (`start_pass`). Backward only
  frees saved tensors, so a pass's resident total at the end of its forward is
  the most saved-activation bytes it held in device memory at once;
  `peak_resident_bytes` is the maximum of that over the passes since `reset`.

Transient working sets (a layer's recomputation in backward, one MLP or loss
tile) are not saved tensors and are not counted here; on CUDA they show in
``max_memory_allocated``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

LayerKey = int | str


@dataclass
class LayerBytes:
    """Bytes one layer saved for backward in one pass."""

    #: kept in device memory
    resident: int = 0
    #: moved to the host store
    offloaded: int = 0


@dataclass
class SavedTensorAccounting:
    """Per-layer saved bytes of the last pass, peaks and copy traffic since the last `reset` (bytes, seconds)."""

    #: layer key -> bytes of the current (or last) pass
    layers: dict[LayerKey, LayerBytes] = field(default_factory=dict)
    #: most resident saved bytes of one pass since reset
    peak_resident_bytes: int = 0
    #: most offloaded bytes held in the host store by one pass since reset
    peak_offloaded_bytes: int = 0
    #: bytes copied device -> host store since reset
    offloaded_bytes: int = 0
    #: bytes copied host store -> device since reset
    prefetched_bytes: int = 0
    #: seconds of those copies the compute waited for (CPU: all of them; CUDA: host time blocked on copy events)
    exposed_copy_s: float = 0.0
    #: passes since reset
    passes: int = 0

    def reset(self) -> None:
        """Forget everything (call at the start of a step)."""
        self.layers.clear()
        self.peak_resident_bytes = self.peak_offloaded_bytes = 0
        self.offloaded_bytes = self.prefetched_bytes = 0
        self.exposed_copy_s = 0.0
        self.passes = 0

    def start_pass(self) -> None:
        """A new micro-batch: per-layer numbers restart (peaks and traffic keep accumulating)."""
        self.layers.clear()
        self.passes += 1

    def record(self, layer: LayerKey, nbytes: int, offloaded: bool) -> None:
        """Count `nbytes` saved by `layer` in the current pass, resident or offloaded."""
        entry = self.layers.setdefault(layer, LayerBytes())
        if offloaded:
            entry.offloaded += nbytes
            self.offloaded_bytes += nbytes
            self.peak_offloaded_bytes = max(self.peak_offloaded_bytes, self.pass_offloaded_bytes())
        else:
            entry.resident += nbytes
            self.peak_resident_bytes = max(self.peak_resident_bytes, self.pass_resident_bytes())

    def pass_resident_bytes(self) -> int:
        """Resident saved bytes of the current pass, all layers."""
        return sum(entry.resident for entry in self.layers.values())

    def pass_offloaded_bytes(self) -> int:
        """Offloaded saved bytes of the current pass, all layers."""
        return sum(entry.offloaded for entry in self.layers.values())

    def block_bytes(self) -> dict[int, LayerBytes]:
        """The decoder blocks' entries of the current pass (integer keys only)."""
        return {key: entry for key, entry in self.layers.items() if isinstance(key, int)}
