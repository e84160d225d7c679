"""Measured memory of one micro-batch on CPU, in the units of `longctx.scheduler.memory_model`.

Saved activations: the saved-tensor accounting of the runtime's hooks
(`longctx.runtime.memory_accounting`), per layer, resident vs offloaded, for
one forward + backward of `tokens` tokens (three packed documents) through
`Decoder.loss` with the given `memory.*` settings. Model states: bytes of the
parameters, their gradients and the optimizer's state tensors after one step.
"""
from __future__ import annotations

import torch

from longctx.model import Decoder
from longctx.model.config import ModelConfig
from longctx.model.loss import count_targets, next_token_targets
from longctx.runtime.activations import RankActivations
from longctx.runtime.config import MemoryConfig, OptimConfig
from longctx.runtime.precision import compute_autocast


def _batch(vocab: int, tokens: int) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
    lengths = [tokens // 2, tokens // 3, tokens - tokens // 2 - tokens // 3]
    generator = torch.Generator().manual_seed(0)
    docs = [torch.randint(0, vocab, (n,), generator=generator) for n in lengths]
    positions = torch.cat([torch.arange(n) for n in lengths])
    cu_seqlens = torch.tensor([0, *torch.cumsum(torch.tensor(lengths), 0).tolist()])
    return docs, positions, cu_seqlens


def saved_bytes(model_name: str, memory: MemoryConfig, tokens: int, precision: str = "fp32") -> dict:
    """layer key -> (resident, offloaded) bytes the hooks counted for one micro-batch of `tokens` tokens.

    `precision` "bf16": the forward under bf16 autocast, with bf16 weights when the optimizer is sharded
    or offloaded (as `longctx.runtime.zero.ShardedAdamW` holds them)."""
    torch.manual_seed(0)
    config = ModelConfig.preset(model_name)
    model = Decoder(config)
    if precision == "bf16" and (memory.optimizer_sharding != "none" or memory.optimizer_offload):
        model = model.to(torch.bfloat16)
    activations = RankActivations(memory, model.parameters(), torch.device("cpu"))
    docs, positions, cu_seqlens = _batch(config.vocab_size, tokens)
    targets = next_token_targets(docs)
    with activations.micro_batch() as scopes, compute_autocast(precision, torch.device("cpu")):
        loss = model.loss(torch.cat(docs), positions, cu_seqlens, targets, count_targets([d.numel() for d in docs]),
                          memory=scopes)
        loss.backward()
    return {key: (entry.resident, entry.offloaded) for key, entry in activations.accounting.layers.items()}


def state_bytes(model_name: str, memory: MemoryConfig) -> dict[str, int]:
    """Bytes of parameters, gradients and optimizer state tensors on this rank after one step (collective).

    With gradient streaming (``optimizer_offload``): the most gradient bytes alive on the device at once
    (the stream's meter) and the host accumulators; with ``param_offload``: the resident parameters, the
    most offloaded parameter bytes materialised at once, and the host copies."""
    from longctx.runtime.optim import make_optimizer
    from longctx.runtime.param_offload import parameter_offload
    from longctx.runtime.zero import ShardedAdamW

    torch.manual_seed(0)
    config = ModelConfig.preset(model_name)
    model = Decoder(config)
    optimizer, _ = make_optimizer(model, OptimConfig(), 1, memory)
    residency = parameter_offload(model, memory, optimizer)
    activations = RankActivations(memory, model.parameters(), torch.device("cpu"), residency)
    docs, positions, cu_seqlens = _batch(config.vocab_size, 64)
    for _ in range(2):  # two micro-batches: the second prefetches weights in the order the first used them
        with activations.micro_batch() as scopes:
            model.loss(torch.cat(docs), positions, cu_seqlens, next_token_targets(docs), 61,
                       memory=scopes).backward()
    params = [p for p in model.parameters() if residency is None or not residency.offloaded(p)]
    out = {"parameters": sum(p.numel() * p.element_size() for p in params)}
    if residency is not None:
        out = {"parameters (resident)": out["parameters"], "parameters (in flight)": residency.peak_device_bytes,
               "parameter copies": residency.host_bytes()}
    stream = getattr(optimizer, "stream", None)
    if stream is None:
        out["gradients"] = sum(p.grad.numel() * p.grad.element_size() for p in model.parameters())
    else:
        out.update({"gradients (in flight)": stream.peak_device_bytes, "gradient accumulators": stream.host_bytes()})
    optimizer.synchronize_gradients(1.0)
    optimizer.step()
    adam = optimizer.torch_optimizer.state
    moments = sum(t.numel() * t.element_size() for state in adam.values() for k, t in state.items() if k != "step")
    masters = sum(m.numel() * 4 for m in optimizer.masters) if isinstance(optimizer, ShardedAdamW) else 0
    return {**out, "optimizer states": moments + masters}
