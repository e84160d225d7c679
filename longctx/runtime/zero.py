"""AdamW on this rank's slices of the parameters (ZeRO-1/2), optionally with its states in host memory.

How it works when ranks run different numbers of micro-batches in changing
groups (the reason plain DDP/FSDP were rejected, see `longctx.runtime.grad_sync`):
nothing happens during the waves — every rank accumulates gradients into its
local ``param.grad`` over whatever it runs (none at all on an idle rank).
After the last wave every rank makes the same calls, bucket by bucket
(`longctx.runtime.zero_layout`):

1. `synchronize_gradients`: the bucket's fp32 gradients are summed over the
   world — zero2: one reduce-scatter, after which the bucket's ``param.grad``
   are freed and only this rank's slice of the sum is kept; zero1: one
   all-reduce whose full result stays in ``param.grad``. The slices are copied
   into the optimizer's store. With ``optimizer_offload`` the gradients never
   stay on the device: during backward each one is streamed into an fp32 host
   accumulator as autograd produces it (`longctx.runtime.grad_stream`), the
   reduction reads the accumulators bucket by bucket (on NCCL each bucket is
   copied to the communication device for its collective; on gloo it runs on
   them directly) and ``param.grad`` stays None under every sharding. Then one scalar
   all-reduce of the squared slice norms gives the global gradient norm, and
   the slices are clipped exactly as `torch.nn.utils.clip_grad_norm_` would.
2. `step`: `torch.optim.AdamW` steps the fp32 master slices (weight decay on
   matrices only, as the replicated optimizer); then each bucket's updated
   slices are all-gathered into the replicated parameters, so every rank holds
   the whole model for the next step's forwards.

``optimizer_sharding=none`` with ``optimizer_offload`` uses the same path with
one shard (each rank keeps whole fp32 masters and states on the host).

Parameter offload (``memory.param_offload``, `longctx.runtime.param_offload`):
the updated weights of offloaded modules are written into their host copies
instead of the device parameters, whose storage is released between uses.

Device weights: the fp32 masters live in the optimizer's store, so the
replicated model parameters (and hence their gradients) may be held in a
narrower `weights_dtype` (bf16 under ``train.precision=bf16``): 2 + 2 bytes
per parameter on the device instead of 4 + 4, as ZeRO and ALST do. Gradients
then accumulate over a step's micro-batches in bf16 and are summed over the
world in fp32.

Parameters stay replicated (ZeRO-1/2, not 3): a forward never needs a
collective over the world, so idle ranks never have to join one mid-step.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.distributed as dist
from torch import nn

from longctx.runtime.config import OptimConfig
from longctx.runtime.grad_stream import GradientStream, layer_parameter_bytes
from longctx.runtime.grad_sync import gather_parameter_bucket, reduce_gradient_bucket
from longctx.runtime.optimizer_offload import new_store_tensor, store_device, to_store, wait
from longctx.runtime.zero_layout import ShardLayout

def _itself(param: nn.Parameter) -> torch.Tensor:
    return param


#: default bucket size in padded elements: 2^26 fp32 elements = 256 MiB of communication buffer
DEFAULT_BUCKET_ELEMENTS = 1 << 26


def adamw(matrices: list[torch.Tensor], vectors: list[torch.Tensor], config: OptimConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on `matrices` only (not on norm weights `vectors`)."""
    return torch.optim.AdamW(
        [{"params": matrices, "weight_decay": config.weight_decay}, {"params": vectors, "weight_decay": 0.0}],
        lr=config.lr, betas=(config.beta1, config.beta2), eps=config.eps,
    )


class ShardedAdamW:
    """AdamW over this rank's slices (`sharding` "none" | "zero1" | "zero2"; `offload`: states on the host).

    Call on every rank: ``zero_grad()`` before the step's waves,
    ``synchronize_gradients(max_norm)`` and ``step()`` after them. With `offload` the gradients stream
    into host accumulators during backward (`stream`); `weights_home` (set by a parameter offload) maps a
    parameter to the tensor its updated weights are written into (default: the parameter itself).
    """

    def __init__(self, model: nn.Module, config: OptimConfig, sharding: str, offload: bool,
                 bucket_elements: int = DEFAULT_BUCKET_ELEMENTS, group: dist.ProcessGroup | None = None,
                 weights_dtype: torch.dtype = torch.float32) -> None:
        if sharding not in ("none", "zero1", "zero2"):
            raise ValueError(f"ShardedAdamW: sharding={sharding!r}; choose none, zero1 or zero2")
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.sharding, self.offload, self.group = sharding, offload, group
        shards = 1 if sharding == "none" else dist.get_world_size(group)
        rank = 0 if sharding == "none" else dist.get_rank(group)
        self.layout = ShardLayout.build([p.numel() for p in self.params], shards, rank, bucket_elements)
        self.device = self.params[0].device
        self.store = store_device(offload, self.device)
        shards_in_order = self.layout.all_shards()
        #: fp32 master slice of every parameter (`[shard.size]`, on the store device)
        self.masters = [new_store_tensor(p.detach().reshape(-1)[s.start:s.stop], self.store)
                        for p, s in zip(self.params, shards_in_order)]
        self.torch_optimizer = adamw([m for m, p in zip(self.masters, self.params) if p.ndim >= 2],
                                     [m for m, p in zip(self.masters, self.params) if p.ndim < 2], config)
        for p in self.params:  # the masters hold fp32; the replicated weights may be narrower
            p.data = p.data.to(weights_dtype)
        for master in self.masters:  # allocated now, so a checkpoint can be loaded into them before step 1
            self.torch_optimizer.state[master] = {
                "step": torch.tensor(0.0), "exp_avg": torch.zeros_like(master), "exp_avg_sq": torch.zeros_like(master)}
        #: the gradients' fp32 host accumulators, filled during backward (with `offload`; else None)
        self.stream = GradientStream(self.params, max(layer_parameter_bytes(model))) if offload else None
        self.weights_home: Callable[[nn.Parameter], torch.Tensor] = _itself

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            p.grad = None
        for master in self.masters:
            master.grad = None
        if self.stream is not None:
            self.stream.zero()

    def local_gradients(self) -> list[torch.Tensor | None]:
        """This rank's accumulated (not yet summed) gradient of every parameter: ``param.grad``, or its fp32
        host accumulator `[numel]` when gradients stream."""
        if self.stream is None:
            return [p.grad for p in self.params]
        self.stream.drain()
        return list(self.stream.accumulators)

    def synchronize_gradients(self, max_norm: float) -> float:
        """Sum the gradients over the world into this rank's slices and clip them; returns the global norm."""
        scatter = self.sharding == "zero2"
        local = self.local_gradients()
        for bucket in self.layout.buckets:
            slices, whole = reduce_gradient_bucket([local[s.index] for s in bucket], bucket, self.layout.shards,
                                                   self.layout.rank, scatter, self.group)
            for k, shard in enumerate(bucket):
                param = self.params[shard.index]
                self.masters[shard.index].grad = to_store(slices[k], self.store)
                keep = whole is not None and self.stream is None
                param.grad = whole[k].view_as(param).to(param.dtype) if keep else None
        wait(self.device)
        return self._clip(max_norm)

    def _clip(self, max_norm: float) -> float:
        """Global L2 norm of the summed gradient (one scalar all-reduce); scale as clip_grad_norm_ does."""
        squares = torch.zeros((), dtype=torch.float64)
        for master in self.masters:
            squares += master.grad.double().pow(2).sum()
        if self.layout.shards > 1:
            dist.all_reduce(squares, op=dist.ReduceOp.SUM, group=self.group)
        norm = float(squares.sqrt())
        if max_norm > 0:
            scale = min(max_norm / (norm + 1e-6), 1.0)
            for master in self.masters:
                master.grad.mul_(scale)
        return norm

    @torch.no_grad()
    def step(self) -> None:
        """AdamW on the master slices, then all-gather them into the replicated parameters."""
        self.torch_optimizer.step()
        for bucket in self.layout.buckets:
            whole = gather_parameter_bucket([self.masters[s.index] for s in bucket], bucket, self.layout.shards,
                                            self.params[bucket[0].index].dtype, self.device, self.group)
            for flat, shard in zip(whole, bucket):
                home = self.weights_home(self.params[shard.index])
                home.copy_(flat.view_as(home))

    def state_bytes(self) -> dict[str, int]:
        """Bytes of fp32 master slices and AdamW moments this rank holds, by device type."""
        total = sum(m.numel() for m in self.masters) * 4 * 3
        return {self.store.type: total}
    @property
    def checkpoint_key(self) -> str:
        """Key of this rank's entry in a checkpoint: its shard index and the shard count."""
        return f"shard{self.layout.rank}of{self.layout.shards}"

    def checkpoint_state(self) -> dict[str, dict[str, torch.Tensor]]:
        """This rank's tensors for DCP, keyed per shard (distinct keys per rank; DCP writes each once).

        Loading into this dict in place restores masters, moments and step counts; learning rates
        are applied by `load_checkpoint_state`.
        """
        shard: dict[str, torch.Tensor] = {}
        for i, master in enumerate(self.masters):
            if master.numel():
                adam = self.torch_optimizer.state[master]
                shard.update({f"master.{i}": master, f"exp_avg.{i}": adam["exp_avg"],
                              f"exp_avg_sq.{i}": adam["exp_avg_sq"], f"step.{i}": adam["step"]})
        lrs = {f"lr.{g}": torch.tensor(group["lr"], dtype=torch.float64)
               for g, group in enumerate(self.torch_optimizer.param_groups)}
        return {self.checkpoint_key: shard, "param_groups": lrs}

    def load_checkpoint_state(self, state: dict[str, dict[str, torch.Tensor]]) -> None:
        """Finish a load into `checkpoint_state()`'s tensors: set the learning rates."""
        for g, group in enumerate(self.torch_optimizer.param_groups):
            group["lr"] = float(state["param_groups"][f"lr.{g}"])
