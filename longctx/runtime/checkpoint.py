"""Checkpoints with torch.distributed.checkpoint (DCP), atomic by rename.

Layout: ``<output_dir>/checkpoints/step_<N>/`` holds DCP's files, including
``.metadata``, which DCP writes last, after every rank's data is on disk. A
save writes into ``.tmp-step_<N>`` and rank 0 renames it to ``step_<N>`` once
DCP returns, so a directory named ``step_<N>`` is complete exactly when its
``.metadata`` exists; a job killed mid-save leaves only a ``.tmp-*``
directory, which the next save of that step replaces and resume ignores.

Contents: the model and optimizer state (FQN-keyed through
`torch.distributed.checkpoint.state_dict`, so the format survives a later
switch to sharded parameters), and a ``trainer`` entry: the step, the LR
schedule's state, the sampler's state and the RNG states (python, numpy,
torch). Parameters are replicated, so DCP deduplicates them and one copy is
written.
"""
from __future__ import annotations

import os
import pickle
import random
import re
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

_STEP_DIR = re.compile(r"^step_(\d+)$")
METADATA = ".metadata"


def checkpoints_dir(output_dir: str | os.PathLike) -> Path:
    return Path(output_dir) / "checkpoints"


def latest_checkpoint(output_dir: str | os.PathLike) -> Path | None:
    """The complete checkpoint (``step_<N>`` with ``.metadata``) of highest N, or None."""
    root = checkpoints_dir(output_dir)
    if not root.is_dir():
        return None
    complete = []
    for entry in root.iterdir():
        match = _STEP_DIR.match(entry.name)
        if match and (entry / METADATA).is_file():
            complete.append((int(match.group(1)), entry))
    return max(complete)[1] if complete else None


def rng_state() -> dict[str, Any]:
    """Python, numpy and torch (CPU, and CUDA when present) RNG states."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@dataclass
class TrainerState:
    """The non-tensor part of a checkpoint."""

    step: int
    schedule: dict[str, Any]
    sampler: dict[str, Any]
    rng: dict[str, Any]


def save_checkpoint(output_dir: str | os.PathLike, model: nn.Module, optimizer: torch.optim.Optimizer,
                    trainer: TrainerState) -> Path:
    """Write ``checkpoints/step_<trainer.step>`` (collective: every rank calls it); returns its path."""
    root = checkpoints_dir(output_dir)
    final, temporary = root / f"step_{trainer.step}", root / f".tmp-step_{trainer.step}"
    if dist.get_rank() == 0:
        shutil.rmtree(temporary, ignore_errors=True)
        temporary.mkdir(parents=True)
    dist.barrier()
    model_state, optimizer_state = get_state_dict(model, optimizer)
    state = {"model": model_state, "optimizer": optimizer_state, "trainer": _trainer_entry(trainer)}
    dcp.save(state, checkpoint_id=str(temporary))
    if dist.get_rank() == 0:
        shutil.rmtree(final, ignore_errors=True)
        os.replace(temporary, final)
    dist.barrier()
    return final


def _trainer_entry(trainer: TrainerState) -> bytes:
    """The trainer state pickled into one leaf (DCP would flatten a nested dict into many keys)."""
    return pickle.dumps(asdict(trainer))


def load_checkpoint(path: str | os.PathLike, model: nn.Module, optimizer: torch.optim.Optimizer) -> TrainerState:
    """Load model and optimizer in place from `path` (collective); returns the trainer state to apply."""
    if not (Path(path) / METADATA).is_file():
        raise FileNotFoundError(f"checkpoint {path} is incomplete (no {METADATA}); resume from a complete one")
    model_state, optimizer_state = get_state_dict(model, optimizer)
    state = {"model": model_state, "optimizer": optimizer_state, "trainer": b""}
    dcp.load(state, checkpoint_id=str(path))
    set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optimizer"])
    return TrainerState(**pickle.loads(state["trainer"]))
