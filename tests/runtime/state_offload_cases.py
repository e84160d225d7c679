"""Rank-side cases of the model-state offload tests: a few steps of dynamic plans with gradient streaming and
parameter offload on or off.

Each step runs a plan through `longctx.runtime.step.run_plan` (checkpoints, tiles and activation offload as
the trainer applies them), then the optimizer's gradient sum, clip and AdamW step. What is returned per rank:
the parameters after the steps, every step's summed fp32 gradient before clipping (the ranks' local
gradients, all-reduced here by the test), and the bookkeeping of the streams and the residency.
"""
from __future__ import annotations

import torch
import torch.distributed as dist

from longctx.model import Decoder, ModelConfig
from longctx.runtime.activations import RankActivations
from longctx.runtime.config import MemoryConfig
from longctx.runtime.grad_stream import layer_parameter_bytes
from longctx.runtime.optim import make_optimizer
from longctx.runtime.param_offload import parameter_offload, restore_weights
from longctx.runtime.process_groups import ProcessGroupCache
from longctx.runtime.step import run_plan
from longctx.runtime.zero import ShardedAdamW
from longctx.scheduler import Plan
from tests.runtime.test_plan_execution import LENGTHS, SWITCHING_PLAN
from tests.runtime.zero_cases import OPTIM

#: rank 3 runs nothing in the whole step; rank 0 runs three micro-batches, rank 2 two
IDLE_RANK_PLAN = {
    "world_size": 4, "lengths": LENGTHS, "method": "hand-made",
    "waves": [
        {"groups": [{"ranks": [0, 1], "kind": "ring", "ulysses_degree": 1, "sequences": [3, 8]},
                    {"ranks": [2], "kind": "local", "ulysses_degree": 1, "sequences": [1, 0, 2]}]},
        {"groups": [{"ranks": [0], "kind": "local", "ulysses_degree": 1, "sequences": [5, 4, 6, 7]}]},
    ],
}
#: one process: every sequence in one local group (packed into several micro-batches)
ONE_PROCESS_PLAN = {
    "world_size": 1, "lengths": LENGTHS, "method": "hand-made",
    "waves": [{"groups": [{"ranks": [0], "kind": "local", "ulysses_degree": 1, "sequences": list(range(9))}]}],
}


def plans(world: int) -> list[dict]:
    """The plan of each step: switching groups, an idle rank, switching again (one process: one plan)."""
    return [ONE_PROCESS_PLAN] * 3 if world == 1 else [SWITCHING_PLAN, IDLE_RANK_PLAN, SWITCHING_PLAN]


def sequences(step: int, vocab: int) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(10 + step)
    return [torch.randint(0, vocab, (n,), generator=generator) for n in LENGTHS]


def _summed_gradient(optimizer, params, device: torch.device) -> list[torch.Tensor]:
    """This step's gradient of every parameter summed over the world, fp32 on the CPU, before clipping."""
    local = [torch.zeros(p.numel()) if g is None else g.reshape(-1).float().cpu()
             for g, p in zip(optimizer.local_gradients(), params)]
    flat = torch.cat(local).to(device)  # the world communicates on `device` (gloo: cpu, nccl: cuda)
    dist.all_reduce(flat)
    return list(flat.cpu().split([p.numel() for p in params]))


def train_on_plans(model_config: ModelConfig, memory: MemoryConfig, replicated: bool = False,
                   device: str = "cpu") -> dict:
    """Three steps of `plans(world)` on this rank under `memory`; see the module docstring.

    The optimizer is `ShardedAdamW` of `memory`'s sharding and offload (also with both off, which
    `make_optimizer` would make replicated), or with `replicated` the replicated AdamW. `device`: where
    the model computes ("cuda" on an NCCL world)."""
    torch.manual_seed(0)
    model = Decoder(model_config).to(device)
    if replicated:
        optimizer = make_optimizer(model, OPTIM, 3)[0]
    else:
        optimizer = ShardedAdamW(model, OPTIM, memory.optimizer_sharding, memory.optimizer_offload)
    residency = parameter_offload(model, memory, optimizer)
    activations = RankActivations(memory, model.parameters(), torch.device(device), residency)
    params = [p for p in model.parameters() if p.requires_grad]
    names = [name for name, p in model.named_parameters() if p.requires_grad]
    gradients, resident_outside, device_grads_left = [], [], []
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    for step, plan_dict in enumerate(plans(dist.get_world_size())):
        plan = Plan.from_dict(plan_dict).validate()
        groups = ProcessGroupCache()
        groups.prepare(plan)
        optimizer.zero_grad(set_to_none=True)
        run_plan(model, plan, sequences(step, model_config.vocab_size), dist.get_rank(), groups,
                 device=torch.device(device), activations=activations)
        device_grads_left.append(sum(p.grad.numel() for p in params if p.grad is not None))
        if residency is not None:
            resident_outside.append(residency.device_bytes())
        gradients.append(dict(zip(names, _summed_gradient(optimizer, params, torch.device(device)))))
        optimizer.synchronize_gradients(OPTIM.grad_clip)
        optimizer.step()
        if residency is not None:
            resident_outside.append(residency.device_bytes())
    stream = getattr(optimizer, "stream", None)
    out = {"device_peak": torch.cuda.max_memory_allocated() if device == "cuda" else None, "gradients": gradients, "device_grads_left": device_grads_left, "resident_outside": resident_outside,
           "stream_peak": None if stream is None else stream.peak_device_bytes,
           "largest_layer": max(layer_parameter_bytes(model)),
           "residency_peak": None if residency is None else residency.peak_device_bytes,
           "most_materialised": _most_materialised(model, memory)}
    restore_weights(residency)
    out["params"] = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    return out


def _most_materialised(model: Decoder, memory: MemoryConfig) -> int:
    """Bytes of the most offloaded weights on the device at once: a module in use and the next one
    prefetched — two blocks, or a block next to the embedding (unless tied to a resident untiled head), or
    (tiled loss) a block prefetched while the final norm and head are in use."""
    def size(*modules) -> int:
        return sum(p.numel() * p.element_size() for m in modules for p in m.parameters())
    block = size(model.blocks[0])
    if memory.loss_tile_tokens is not None:
        other = max(size(model.embedding), size(model.norm, model.head))
    else:
        other = 0 if model.config.tie_embeddings else size(model.embedding)
    return block + max(block, other)


def kept_gradients_are_seen(model_config: ModelConfig) -> dict:
    """The stream's meter is real: with another hook keeping every gradient alive (what a stream that
    never frees them would do), the peak it reports is the whole model's gradient bytes."""
    torch.manual_seed(0)
    model = Decoder(model_config)
    kept = []
    for p in model.parameters():
        p.register_post_accumulate_grad_hook(lambda param: kept.append(param.grad))
    optimizer, _ = make_optimizer(model, OPTIM, 1, MemoryConfig(optimizer_offload=True))
    plan = Plan.from_dict(ONE_PROCESS_PLAN).validate()
    groups = ProcessGroupCache()
    groups.prepare(plan)
    run_plan(model, plan, sequences(0, model_config.vocab_size), 0, groups,
             activations=RankActivations(MemoryConfig(optimizer_offload=True), model.parameters(),
                                         torch.device("cpu")))
    return {"stream_peak": optimizer.stream.peak_device_bytes, "largest_layer": max(layer_parameter_bytes(model)),
            "model_bytes": sum(p.numel() * p.element_size() for p in model.parameters())}


def streamed_non_finite_gradient_message(model_config: ModelConfig) -> str:
    """The non-finite check's message when a streamed (host-accumulated) gradient is infinite."""
    from longctx.runtime.finite_guard import NonFiniteError, check_local_values

    torch.manual_seed(0)
    model = Decoder(model_config)
    optimizer = ShardedAdamW(model, OPTIM, "none", offload=True)
    (model.norm.weight * float("inf")).sum().backward()
    assert model.norm.weight.grad is None  # streamed to the host
    try:
        check_local_values(7, 1.0, optimizer.local_gradients())
    except NonFiniteError as error:
        return str(error)
    return ""
