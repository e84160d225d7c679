"""Memory of one training step per rank: the one model the planner, the runtime's checks and `longctx memory` use.

Pure Python (never imports torch). Units: bytes, tokens, elements. ``n`` is the
number of tokens of one rank's shard of one micro-batch (what the rank runs at
once); the model shape is D = dim, F = ffn_dim, V = vocab, H = heads, KV =
n_kv_heads * head_dim, L = layers, P = parameters.

What the runtime keeps (`longctx.runtime`, `longctx.model`), and so what is counted:

* model states: parameters replicated (ZeRO-1/2 shard optimizer states, not
  parameters): fp32, or bf16 under bf16 precision when the optimizer is
  sharded or offloaded (its fp32 masters live elsewhere, see
  `longctx.runtime.zero`); gradients in the same dtype, accumulated locally
  over the step (ranks run different micro-batches, so they are reduced once
  at its end: full size on
  every rank during backward whatever the sharding); AdamW moments — with
  ``optimizer_sharding=none`` and no offload the parameters are the master
  weights and each rank holds m and v for all P; otherwise fp32 master, m and
  v for this rank's ``ceil(P / shards)`` elements, in host memory with
  ``optimizer_offload``. With ``optimizer_offload`` the gradients stream into
  fp32 host accumulators (4P, host) during backward
  (`longctx.runtime.grad_stream`): the device holds at most two layers'
  gradients (the layer autograd just produced and one layer of copies in the
  staging ring; a layer: a block or the V*D embedding/head, the larger).
  ``param_offload`` (`longctx.runtime.param_offload`): the blocks, the
  embedding and (tiled loss) the final norm and head live as host copies in
  the weights' dtype; the device holds the rest (untiled: the final norm and
  head, and the embedding when tied to it) and two modules: the one in use and
  the next one, prefetched (a block beside a block, the embedding or the head).
* saved activations per token per layer (`saved_per_token`), for fp32 and for
  bf16 autocast (linear outputs bf16; residual stream, norms, RoPE tables,
  attention log-sum-exp and loss fp32; the residual stream is in the device
  weights' dtype): checkpointing ``full`` keeps the block input (the residual,
  D); ``selective`` adds the attention output (D in the matmul dtype) and its
  lse (4H); ``none`` keeps every intermediate:
  both RMSNorms (input, normalised value, 1/rms, output), the inputs of the
  q/k/v and MLP linears (one bf16 copy per linear under autocast), rotated q,
  k, v, the attention output and lse, and 4F matmul-dtype SwiGLU
  intermediates (only the MLP input with ``mlp_tile_tokens``). The first
  layer also keeps the RoPE tables (4 * head_dim per token); bf16 weight
  casts and fp32 norm-weight copies are counted per layer (`weight_copies`).
  Embedding: the int64 ids; head: final norm and head input (tiled loss: the
  hidden state and targets); loss (untiled): the fp32 log-softmax ``[n, V]``.
* offload: ``checkpoints`` moves the blocks' saved tensors to host memory,
  ``all`` every saved tensor; the device keeps ``offload_layers_in_flight``
  layers' worth (copy-out / prefetch in flight).
* working set of the backward of one block (`block_working_set`): with
  checkpointing full/selective the layer's ``none`` set is recomputed, plus
  the activation gradients in flight (three fp32 ``[n, D]``) and dq/dk/dv;
  tiled: whole-shard q/k/v, attention output and their gradients plus one
  token tile's intermediates; one MLP tile (gate, up, product and their
  gradients: 6 * tile * F matmul bytes), the attention kernel's workspace and
  the RoPE tables. Of the head (`head_working_set`): one loss tile (bf16/fp32
  logits, log-softmax and its gradient: tile * V * (a + 12)) and the last
  block output's gradient.
* communication: the larger of ring's double-buffered K/V blocks and Ulysses'
  q/k/v/out all-to-all buffers per token; at the step's end the gradient
  reduction's buffers (replicated: one flat fp32 copy of all gradients;
  sharded: two padded fp32 buckets) and, for an AdamW stepped on the device,
  one fp32 temporary of the stepped elements.

The peak is the largest of three phases: the head's backward (states + every
resident saved activation + the head's working set), a block's backward
(states + the blocks' resident saved activations, the head's being freed by
then + a block's working set + communication) and the synchronisation
(states + reduction buffers + optimizer temporaries).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

PRECISION = ("fp32", "bf16")
#: ZeRO bucket size in elements (longctx.runtime.zero.DEFAULT_BUCKET_ELEMENTS)
BUCKET_ELEMENTS = 1 << 26
FP32, INT64 = 4, 8
ATTENTION_KERNELS = ("triton", "flash_attn", "reference")
#: the reference kernel's tile (longctx.attention.reference QUERY_TILE, KEY_TILE) and how many fp32
#: score-sized temporaries its backward holds at once (scores, probabilities, their gradient, dO V^T, mask)
REFERENCE_TILE, REFERENCE_TEMPORARIES = (256, 1024), 5


class MemoryModelError(ValueError):
    """An input the memory model cannot use; the message names the field, the value and the fix."""


@dataclass(frozen=True)
class LayerBytes:
    """Saved-for-backward bytes of one layer: kept in device memory, and moved to the host store."""

    resident: float
    offloaded: float


@dataclass
class MemoryBreakdown:
    """Predicted memory of one rank for micro-batch shards of `tokens` tokens. Units: bytes."""

    tokens: int
    #: component -> bytes in device memory at the peak
    device: dict[str, float] = field(default_factory=dict)
    #: component -> bytes in host memory
    host: dict[str, float] = field(default_factory=dict)
    #: "backward (blocks)", "backward (head and loss)" or "gradient sync": the phase that holds the peak
    peak_phase: str = "backward (blocks)"
    capacity_bytes: float | None = None

    @property
    def peak_bytes(self) -> float:
        return sum(self.device.values())

    @property
    def fits(self) -> bool | None:
        return None if self.capacity_bytes is None else self.peak_bytes <= self.capacity_bytes


@dataclass(frozen=True)
class MemoryModel:
    """Per-rank memory of a step of `shape` under `settings` on a world of `world_size` ranks."""

    #: the decoder's shape: a `longctx.model.config.ModelConfig` (torch-free)
    shape: Any
    #: the run's memory settings: a `longctx.runtime.config.MemoryConfig`
    settings: Any
    #: "bf16" (autocast: the trainer's choice on CUDA) or "fp32" (on CPU)
    precision: str = "bf16"
    world_size: int = 1
    #: device bytes kept free for the allocator, CUDA context and framework
    reserved_bytes: float = 0.0
    bucket_elements: int = BUCKET_ELEMENTS
    #: the attention kernel whose backward workspace is counted: "triton" (longctx's kernel: fp32 row
    #: statistics only), "flash_attn" (+ an fp32 `[n, heads, head_dim]` dq accumulator) or "reference"
    #: (the exact CPU kernel: fp32 head-major dq/dk/dv copied back token-major, plus per-tile score
    #: temporaries)
    attention_kernel: str = "triton"

    def __post_init__(self) -> None:
        if self.precision not in PRECISION:
            raise MemoryModelError(f"precision={self.precision!r}: choose one of {list(PRECISION)}")
        if isinstance(self.world_size, bool) or not isinstance(self.world_size, int) or self.world_size < 1:
            raise MemoryModelError(f"world_size={self.world_size!r} must be an integer >= 1")
        if self.reserved_bytes < 0:
            raise MemoryModelError(f"reserved_bytes={self.reserved_bytes!r} must be >= 0")
        if self.attention_kernel not in ATTENTION_KERNELS:
            raise MemoryModelError(f"attention_kernel={self.attention_kernel!r}: choose one of {ATTENTION_KERNELS}")

    # ---- sizes ------------------------------------------------------------------------------
    @property
    def matmul_bytes(self) -> int:
        """Bytes of one element of a linear layer's output (and of q/k/v/attention output)."""
        return 2 if self.precision == "bf16" else FP32

    @property
    def residual_bytes(self) -> int:
        """Bytes of one element of the residual stream: the embedding's dtype, i.e. the device weights'."""
        return self.matmul_bytes if self._sharded_path() else FP32

    @property
    def shards(self) -> int:
        return 1 if self.settings.optimizer_sharding == "none" else self.world_size

    def _sharded_path(self) -> bool:
        return self.settings.optimizer_sharding != "none" or self.settings.optimizer_offload

    def owned_elements(self) -> int:
        """Elements of the parameters whose optimizer state this rank holds (largest rank)."""
        return self._owned(self.shards)

    def _owned(self, shards: int) -> int:
        s = self.shape
        matrices = [s.dim * s.dim] * 2 + [s.dim * s.kv_dim] * 2 + [s.dim * s.ffn_dim] * 3
        per_layer = sum(math.ceil(n / shards) for n in matrices) + 2 * math.ceil(s.dim / shards)
        return 2 * math.ceil(s.vocab_size * s.dim / shards) + s.n_layers * per_layer + math.ceil(s.dim / shards)

    # ---- model states -----------------------------------------------------------------------
    def _layer_elements(self) -> tuple[int, int]:
        """Parameter elements of (one decoder block, the embedding or the head matrix)."""
        s = self.shape
        return 2 * s.dim * s.dim + 2 * s.dim * s.kv_dim + 3 * s.dim * s.ffn_dim + 2 * s.dim, s.vocab_size * s.dim

    def _parameter_bytes(self) -> tuple[dict[str, float], dict[str, float]]:
        """(device, host) bytes of the weights: all on the device, or with ``param_offload`` the resident
        ones plus the largest module in use on the device and host copies of the offloaded ones."""
        p, weights, s = self.shape.num_parameters(), self.residual_bytes, self.shape
        if not self.settings.param_offload:
            return {"parameters": weights * p}, {}
        block, matrix = self._layer_elements()
        if self.settings.loss_tile_tokens is not None:  # the final norm and head are used together
            resident, other = 0, matrix + s.dim
        else:  # the norm and head stay; the embedding too when tied to the head
            resident, other = s.dim + matrix, (0 if s.tie_embeddings else matrix)
        in_flight = block + max(block, other)  # a module in use and the next one prefetched
        return ({"parameters (resident)": weights * resident, "parameters (in flight)": weights * in_flight},
                {"parameter copies": weights * (p - resident)})

    def state_bytes(self) -> dict[str, dict[str, float]]:
        """{"device": {...}, "host": {...}} bytes of parameters, gradients and optimizer states."""
        p = self.shape.num_parameters()
        weights = self.residual_bytes  # bf16 next to fp32 masters elsewhere, or the fp32 masters themselves
        device, host = self._parameter_bytes()
        if self.settings.optimizer_offload:
            device["gradients (in flight)"] = 2 * weights * max(self._layer_elements())
            host["gradient accumulators"] = FP32 * p
        else:
            device["gradients"] = weights * p
        if not self._sharded_path():
            device["optimizer states"] = 2 * FP32 * p
        else:
            where = host if self.settings.optimizer_offload else device
            where["optimizer states"] = 3 * FP32 * self.owned_elements()
        return {"device": device, "host": host}

    # ---- saved activations ------------------------------------------------------------------
    def _linear_inputs(self) -> tuple[float, float]:
        """Bytes per token the attention's q/k/v linears and the MLP keep of their input (a norm's output)."""
        s, a, r = self.shape, self.matmul_bytes, self.residual_bytes
        tiled = self.settings.mlp_tile_tokens is not None
        if a == r:  # the norm output is already in the matmul dtype: one tensor, shared by the linears
            return r * s.dim, r * s.dim
        return 3 * a * s.dim, (r if tiled else 2 * a) * s.dim  # autocast casts it once per linear

    def _block_saved_none(self) -> float:
        """Bytes per token one block saves with checkpointing none (without the RoPE tables)."""
        s, a = self.shape, self.matmul_bytes
        norm = 2 * FP32 * s.dim + FP32  # fp32 input (or its fp32 copy), normalised value, 1/rms
        attention_in, mlp_in = self._linear_inputs()
        attention = a * (2 * s.dim + 2 * s.kv_dim) + FP32 * s.n_heads  # rotated q, k, v, output; lse
        mlp = mlp_in + (0 if self.settings.mlp_tile_tokens is not None else 4 * a * s.ffn_dim)
        return 2 * norm + attention_in + attention + mlp

    def _block_saved(self) -> float:
        """Bytes per token one block saves under the checkpointing setting."""
        s, r = self.shape, self.residual_bytes
        mode = self.settings.checkpointing
        if mode in ("full", "tiled"):
            return r * s.dim
        if mode == "selective":
            return r * s.dim + self.matmul_bytes * s.dim + FP32 * s.n_heads
        return self._block_saved_none()

    def offloaded(self, key: int | str) -> bool:
        """Whether layer `key`'s saved tensors go to the host store: blocks unless offload is none; the
        embedding, head and loss only with offload all."""
        return self.settings.offload == "all" or (self.settings.offload != "none" and isinstance(key, int))

    def saved_per_token(self) -> dict[str, float]:
        """Saved bytes per token: "block" (each of the L blocks), "rope" (checkpointing none only: the
        first block's when resident, every block's when offloaded), "embedding", "head" (untiled: the final
        norm's and the head's inputs; tiled: the last block's output and the targets), "loss" (untiled only:
        the fp32 log-softmax and the targets)."""
        s, a = self.shape, self.matmul_bytes
        block = self._block_saved()
        if self.settings.offload != "none" and self.settings.checkpointing == "none":
            block += a * s.dim  # the attention output is saved as [n, H, hd] and as the o input's view: 2 copies
        if self.settings.loss_tile_tokens is None:
            head_norm = 2 * FP32 * s.dim + FP32  # fp32 input (or its copy), normalised value, 1/rms
            head = head_norm + (self.residual_bytes if a == self.residual_bytes else a) * s.dim
            loss = FP32 * s.vocab_size + INT64  # the cross-entropy's fp32 log-softmax and the targets
        else:  # the tiled head+loss keeps the last block's output and the targets (the final norm is tiled too)
            head, loss = self.residual_bytes * s.dim + INT64, 0.0
        rope = FP32 * s.head_dim if self.settings.checkpointing == "none" else 0.0
        return {"block": block, "rope": rope, "embedding": INT64, "head": head, "loss": loss}

    def weight_copies(self) -> dict[str, float]:
        """Bytes (per layer, not per token) of weight copies saved for backward: under bf16 autocast with
        fp32 weights the linears keep a bf16 cast of their weight (the tiled MLP and tiled loss reuse
        the fp32 parameter); with bf16 weights each RMSNorm keeps an fp32 copy of its weight."""
        s, a, r = self.shape, self.matmul_bytes, self.residual_bytes
        if a == r == FP32:
            return {"block": 0.0, "head": 0.0}
        tiled_head = self.settings.loss_tile_tokens is not None
        if a != r:
            attention = 2 * s.dim * s.dim + 2 * s.dim * s.kv_dim
            mlp = 0 if self.settings.mlp_tile_tokens is not None else 3 * s.dim * s.ffn_dim
            head = 0 if tiled_head else s.vocab_size * s.dim
            return {"block": a * (attention + mlp), "head": a * head}
        return {"block": 2 * FP32 * s.dim, "head": 0.0 if tiled_head else FP32 * s.dim}

    def saved_bytes(self, tokens: int) -> dict[int | str, LayerBytes]:
        """Saved bytes of one micro-batch shard of `tokens` tokens per layer key (block index, "embedding",
        "head", "loss"), resident vs offloaded, as the runtime's saved-tensor accounting counts them."""
        per, copies = self.saved_per_token(), self.weight_copies()
        block_copies = copies["block"] if self.settings.checkpointing == "none" else 0.0  # a checkpoint has none
        amounts: dict[int | str, float] = {}
        for i in range(self.shape.n_layers):  # resident RoPE tables count once; offloaded, each layer copies its own
            rope = per["rope"] if i == 0 or self.offloaded(i) else 0.0
            amounts[i] = (per["block"] + rope) * tokens + block_copies
        amounts["embedding"] = per["embedding"] * tokens
        amounts["head"] = per["head"] * tokens + copies["head"]
        amounts["loss"] = per["loss"] * tokens
        return {key: LayerBytes(0.0, value) if self.offloaded(key) else LayerBytes(value, 0.0)
                for key, value in amounts.items()}

    # ---- working sets -----------------------------------------------------------------------
    def block_working_set(self, n: int) -> dict[str, float]:
        """Transient device bytes while one block back-propagates a shard of `n` tokens, by component.

        Checkpointing full/selective: the recomputed layer's every intermediate (its "none" set), three
        fp32 `[n, dim]` activation gradients and dq/dk/dv. Tiled (`longctx.model.tiled_block`): the
        whole-shard q/k/v, attention output and lse, the block's output gradient (which the input
        gradient overwrites) and the attention output's gradient, plus the larger of one token tile's
        intermediates with its MLP tile, and dq/dk/dv with the attention workspace.
        Otherwise: one MLP tile, the attention backward's workspace (its fp32 row statistics; plus an fp32
        dq accumulator for kernels that keep one, see `attention_kernel`), the RoPE tables of checkpointed
        blocks (fp32 cos and sin), the attention communication buffers on a group of several ranks.
        """
        s, a, r = self.shape, self.matmul_bytes, self.residual_bytes
        mode, tile = self.settings.checkpointing, self.settings.mlp_tile_tokens
        qkv = a * (s.dim + 2 * s.kv_dim)
        mlp_tile = min(n, tile or n) * 6 * a * s.ffn_dim
        workspace = self._attention_workspace(n)
        if mode == "tiled":  # the larger of two moments: a token tile's recompute + backward, attention's backward
            kept = (qkv + a * s.dim + FP32 * s.n_heads) * n  # q, k, v, the attention output, its lse
            gradients = (r * s.dim + a * s.dim) * n  # the output's gradient (the input's overwrites it) and dO
            tile_set = min(n, tile) * self._block_saved_none()
            if tile_set + mlp_tile >= qkv * n + workspace:
                recompute, workspace = kept + tile_set, 0.0
            else:  # dq, dk, dv
                recompute, gradients, mlp_tile = kept, gradients + qkv * n, 0.0
        else:
            recompute = self._block_saved_none() * n if mode != "none" else 0.0
            gradients = (3 * FP32 * s.dim + qkv) * n
        ring = 2 * 2 * a * s.kv_dim
        ulysses = 2 * a * (2 * s.dim + 2 * s.kv_dim)
        return {
            "layer recompute": recompute,
            "activation gradients": gradients,
            "MLP tile": mlp_tile,
            "attention backward workspace": workspace,
            "RoPE tables": FP32 * s.head_dim * n if mode != "none" else 0.0,
            "attention communication": max(ring, ulysses) * n if self.world_size > 1 else 0.0,
        }

    def _attention_workspace(self, n: int) -> float:
        """Bytes the attention kernel's backward allocates for a shard of `n` tokens (see `attention_kernel`)."""
        s = self.shape
        per_token = FP32 * s.n_heads  # the row statistics D = rowsum(dO * O)
        if self.attention_kernel == "flash_attn":
            return (per_token + FP32 * s.dim) * n
        if self.attention_kernel == "reference":
            rows, keys = (min(n, t) for t in REFERENCE_TILE)
            scores = REFERENCE_TEMPORARIES * FP32 * s.n_heads * rows * keys
            return (per_token + FP32 * (s.dim + 2 * s.kv_dim)) * n + scores
        return per_token * n

    def head_working_set(self, n: int) -> dict[str, float]:
        """Transient device bytes while the head and loss back-propagate: one loss tile (logits in the
        matmul dtype, fp32 logits, log-softmax and its gradient) and the last block output's gradient."""
        s = self.shape
        loss_rows = min(n, self.settings.loss_tile_tokens or n)
        return {"loss tile": loss_rows * s.vocab_size * (self.matmul_bytes + 3 * FP32),
                "activation gradients": self.residual_bytes * s.dim * n,
                "RoPE tables": FP32 * s.head_dim * n if self.settings.checkpointing != "none" else 0.0}

    # ---- the peak ---------------------------------------------------------------------------
    def breakdown(self, tokens: int, capacity_bytes: float | None = None) -> MemoryBreakdown:
        """Peak device bytes of a rank running shards of `tokens` tokens, by component, and host bytes."""
        if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 0:
            raise MemoryModelError(f"tokens={tokens!r} must be an integer >= 0")
        s, n = self.shape, tokens
        states = self.state_bytes()
        saved = self.saved_bytes(n)
        offloaded = sum(layer.offloaded for layer in saved.values())
        in_flight = min(self.settings.offload_layers_in_flight, s.n_layers) * saved[s.n_layers - 1].offloaded
        kept = {"saved activations (resident)": sum(layer.resident for layer in saved.values()),
                "offload buffers (layers in flight)": in_flight, "reserved": self.reserved_bytes}
        # a block back-propagates after the head and loss did: their saved tensors are gone by then
        blocks_kept = {**kept, "saved activations (resident)": kept["saved activations (resident)"]
                       - saved["head"].resident - saved["loss"].resident}
        blocks = {**states["device"], **blocks_kept, **self.block_working_set(n)}
        head = {**states["device"], **kept, **self.head_working_set(n)}
        if self._sharded_path():
            reduction = 2 * FP32 * min(self.bucket_elements, self.shards * self.owned_elements())
        else:
            reduction = FP32 * s.num_parameters()
        stepped = 0.0 if self.settings.optimizer_offload else FP32 * (
            self.owned_elements() if self._sharded_path() else s.num_parameters())
        sync = {**states["device"], "gradient sync buffers": reduction, "optimizer step temporaries": stepped,
                "reserved": self.reserved_bytes}
        host = {**states["host"], "offloaded activations": offloaded}
        phase, device = max((("backward (blocks)", blocks), ("backward (head and loss)", head),
                             ("gradient sync", sync)), key=lambda item: sum(item[1].values()))
        return MemoryBreakdown(tokens, {k: v for k, v in device.items() if v}, {k: v for k, v in host.items() if v},
                               phase, capacity_bytes)

    def max_tokens_per_rank(self, capacity_bytes: float) -> int:
        """Most tokens of one rank's shard whose step peak fits `capacity_bytes` (0 when nothing fits)."""
        if self.breakdown(0).peak_bytes > capacity_bytes:
            return 0
        low, high = 0, 1
        while self.breakdown(high).peak_bytes <= capacity_bytes:
            low, high = high, high * 2
            if high > 1 << 40:
                return low
        while high - low > 1:
            middle = (low + high) // 2
            low, high = (middle, high) if self.breakdown(middle).peak_bytes <= capacity_bytes else (low, middle)
        return low
