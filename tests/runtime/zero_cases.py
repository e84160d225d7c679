"""Rank-side cases of the optimizer-sharding tests: a few AdamW steps in which ranks run uneven work.

Model: an odd-shaped decoder (no parameter count divides 3 or 4 throughout) so
shards are uneven. Data: fixed random documents; in each step rank r runs the
documents `assignment(step, world)[r]` one after another as separate
micro-batches — some ranks several, some none, different every step — which
is what a dynamic plan does to the gradient accumulation.
"""
from __future__ import annotations

import torch
import torch.distributed as dist

from longctx.model import Decoder
from longctx.model.config import ModelConfig
from longctx.model.loss import count_targets, next_token_targets, step_loss
from longctx.runtime.config import OptimConfig

#: dim 30 = 3 heads of 10, 1 KV head; ffn 47; vocab 101
MODEL = ModelConfig(name="custom", vocab_size=101, dim=30, n_layers=2, n_heads=3, n_kv_heads=1, ffn_dim=47)
#: eps 1e-6: see tests/runtime/conftest.py tiny_run (keeps the comparison about the gradients)
OPTIM = OptimConfig(lr=1e-3, warmup_steps=0, eps=1e-6, grad_clip=0.05)
LENGTHS = [[17, 5, 40, 1, 23, 9], [31, 2, 12, 28], [7, 50, 3, 19, 11]]


def documents(step: int) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(100 + step)
    return [torch.randint(0, MODEL.vocab_size, (n,), generator=generator) for n in LENGTHS[step % len(LENGTHS)]]


def assignment(step: int, world: int) -> list[list[int]]:
    """Document indices per rank: round-robin from a step-dependent start, rank 0 idle on odd steps."""
    docs = len(LENGTHS[step % len(LENGTHS)])
    ranks = [r for r in range(world) if not (step % 2 and r == 0 and world > 1)]
    out: list[list[int]] = [[] for _ in range(world)]
    for i in range(docs):
        out[ranks[(i + step) % len(ranks)]].append(i)
    return out


def _accumulate(model: Decoder, docs: list[torch.Tensor], which: list[int]) -> None:
    total = count_targets([d.numel() for d in docs])
    for i in which:
        tokens = docs[i]
        positions = torch.arange(tokens.numel())
        cu_seqlens = torch.tensor([0, tokens.numel()])
        step_loss(model(tokens, positions, cu_seqlens), next_token_targets([tokens]), total).backward()


def reference_training(steps: int) -> dict[str, torch.Tensor]:
    """One process: every document of the step, torch AdamW on the whole model, clip_grad_norm_."""
    torch.manual_seed(0)
    model = Decoder(MODEL)
    matrices = [p for p in model.parameters() if p.ndim >= 2]
    vectors = [p for p in model.parameters() if p.ndim < 2]
    optimizer = torch.optim.AdamW([{"params": matrices, "weight_decay": OPTIM.weight_decay},
                                   {"params": vectors, "weight_decay": 0.0}],
                                  lr=OPTIM.lr, betas=(OPTIM.beta1, OPTIM.beta2), eps=OPTIM.eps)
    for step in range(steps):
        optimizer.zero_grad(set_to_none=True)
        docs = documents(step)
        _accumulate(model, docs, list(range(len(docs))))
        torch.nn.utils.clip_grad_norm_(model.parameters(), OPTIM.grad_clip)
        optimizer.step()
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def run_steps(model: Decoder, optimizer, first: int, last: int) -> list[float]:
    """Steps first..last-1 of the uneven schedule on this rank; returns the gradient norms."""
    norms = []
    for step in range(first, last):
        optimizer.zero_grad(set_to_none=True)
        docs = documents(step)
        _accumulate(model, docs, assignment(step, dist.get_world_size())[dist.get_rank()])
        norms.append(optimizer.synchronize_gradients(OPTIM.grad_clip))
        optimizer.step()
    return norms


def sharded_training(steps: int, sharding: str, offload: bool, bucket_elements: int, bf16: bool = False) -> dict:
    """`steps` steps with ShardedAdamW on every rank; returns parameters, norms and state bytes.
    `bf16`: bf16 device weights next to the fp32 masters, forward under bf16 autocast."""
    from longctx.runtime.precision import compute_autocast
    from longctx.runtime.zero import ShardedAdamW

    torch.manual_seed(0)
    model = Decoder(MODEL)
    optimizer = ShardedAdamW(model, OPTIM, sharding, offload, bucket_elements=bucket_elements,
                             weights_dtype=torch.bfloat16 if bf16 else torch.float32)
    with compute_autocast("bf16" if bf16 else "fp32", torch.device("cpu")):
        norms = run_steps(model, optimizer, 0, steps)
    masters_match = all(torch.equal(p.detach().reshape(-1)[s.start:s.stop], m.to(p.dtype))
                        for p, s, m in zip(model.parameters(), optimizer.layout.all_shards(), optimizer.masters))
    grads_kept = [p.grad is not None for p in model.parameters()]
    return {"params": {k: v.detach().clone() for k, v in model.state_dict().items()}, "norms": norms,
            "owned": optimizer.layout.owned_elements(), "state_bytes": optimizer.state_bytes(),
            "grads_kept": grads_kept, "buckets": len(optimizer.layout.buckets), "masters_match": masters_match}


def replicated_training(steps: int) -> dict:
    """The same uneven schedule with the replicated optimizer (optimizer_sharding=none)."""
    from longctx.runtime.optim import make_optimizer

    torch.manual_seed(0)
    model = Decoder(MODEL)
    optimizer, _ = make_optimizer(model, OPTIM, steps)
    run_steps(model, optimizer, 0, steps)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def checkpoint_resume(output_dir: str, sharding: str, offload: bool, steps: int, stop_at: int) -> dict:
    """Train `steps` steps straight, and again stopping at `stop_at` with a checkpoint and resuming
    into a fresh model and optimizer; returns both runs' parameters."""
    from longctx.runtime.checkpoint import TrainerState, load_checkpoint, save_checkpoint
    from longctx.runtime.optim import make_optimizer
    from longctx.runtime.config import MemoryConfig

    memory = MemoryConfig(optimizer_sharding=sharding, optimizer_offload=offload)

    def fresh():
        torch.manual_seed(0)
        model = Decoder(MODEL)
        return (model, *make_optimizer(model, OPTIM, steps, memory))

    model, optimizer, schedule = fresh()
    for step in range(steps):
        run_steps(model, optimizer, step, step + 1)
        schedule.step()
    straight = {k: v.detach().clone() for k, v in model.state_dict().items()}

    model, optimizer, schedule = fresh()
    for step in range(stop_at):
        run_steps(model, optimizer, step, step + 1)
        schedule.step()
    save_checkpoint(output_dir, model, optimizer, TrainerState(stop_at, schedule.state_dict(), {}, {}))
    model, optimizer, schedule = fresh()
    path = f"{output_dir}/checkpoints/step_{stop_at}"
    saved = load_checkpoint(path, model, optimizer)
    schedule.load_state_dict(saved.schedule)
    for step in range(stop_at, steps):
        run_steps(model, optimizer, step, step + 1)
        schedule.step()
    return {"straight": straight, "resumed": {k: v.detach().clone() for k, v in model.state_dict().items()}}


def load_with_other_sharding(path: str, sharding: str) -> str:
    """Try to load a checkpoint into an optimizer of `sharding`; returns the error message."""
    from longctx.runtime.checkpoint import load_checkpoint
    from longctx.runtime.optim import make_optimizer
    from longctx.runtime.config import MemoryConfig

    model = Decoder(MODEL)
    optimizer, _ = make_optimizer(model, OPTIM, 4, MemoryConfig(optimizer_sharding=sharding))
    try:
        load_checkpoint(path, model, optimizer)
    except ValueError as error:
        return str(error)
    return ""
