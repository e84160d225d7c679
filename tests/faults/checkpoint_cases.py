"""Rank functions of test_checkpoint_faults (importable by the gloo pool's spawned ranks)."""
from __future__ import annotations

import torch
import torch.distributed as dist

from longctx.runtime.checkpoint import TrainerState, load_checkpoint, newest_good_checkpoint, save_checkpoint


def _model_and_optimizer(seed: int) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.Linear(64, 8))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    return model, optimizer


def _train_one_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
    model(torch.ones(4, 32)).square().sum().backward()
    optimizer.step()
    optimizer.zero_grad()


def save_steps(output_dir: str, steps: list[int], keep: int) -> dict[int, dict[str, torch.Tensor]]:
    """Train one step before each save of `steps`; returns the parameters saved at each step."""
    model, optimizer = _model_and_optimizer(seed=0)
    saved = {}
    for step in steps:
        _train_one_step(model, optimizer)
        save_checkpoint(output_dir, model, optimizer, TrainerState(step, {}, {"step": step}, {}), keep=keep)
        saved[step] = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return saved


def resume(output_dir: str) -> tuple[str | None, list[str], int | None, dict[str, torch.Tensor] | None]:
    """What a resume finds: (path, messages, loaded step, loaded parameters) — the same on every rank."""
    path, messages = newest_good_checkpoint(output_dir)
    if path is None:
        return None, messages, None, None
    model, optimizer = _model_and_optimizer(seed=1)  # different weights: the load must replace them
    state = load_checkpoint(path, model, optimizer)
    dist.barrier()
    return str(path), messages, state.step, {k: v.detach().clone() for k, v in model.state_dict().items()}
