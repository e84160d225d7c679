"""Checkpoints with torch.distributed.checkpoint (DCP), atomic by rename, verified by checksums.

Layout: ``<output_dir>/checkpoints/step_<N>/`` holds DCP's files, including
``.metadata``, which DCP writes last, after every rank's data is on disk, and
``checksums.json`` (see `checkpoint_files`). A save writes into
``.tmp-step_<N>``; once DCP returns the ranks hash the files (each rank a
share of them), rank 0 writes ``checksums.json`` and renames the directory to
``step_<N>``, then deletes all but the newest ``train.keep_checkpoints``. A job
killed mid-save leaves only a ``.tmp-*`` directory, which the next save of
that step replaces and resume ignores.

Resume (`newest_good_checkpoint`) verifies the newest complete checkpoint
(sizes and SHA-256 of every file, each rank a share) before loading; a bad
one is renamed to ``corrupt-step_<N>``, named in a message, and the next
older one is tried.

Contents: the model and optimizer state (FQN-keyed through
`torch.distributed.checkpoint.state_dict`, so the format survives a later
switch to sharded parameters), and a ``trainer`` entry: the step, the LR
schedule's state, the sampler's state and the RNG states (python, numpy,
torch). Parameters are replicated, so DCP deduplicates them and one copy is
written. Sharded optimizer states (ZeRO) are written per rank, see
`optimizer_checkpoint`.
"""
from __future__ import annotations

import os
import pickle
import random
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch import nn

from longctx.runtime.checkpoint_files import (
    METADATA, checkpoint_data_files, checkpoints_dir, complete_checkpoints, digest_problem, expected_digests,
    file_digest, listing_problem, prune_checkpoints, quarantine, write_checksums,
)
from longctx.runtime.optimizer_checkpoint import apply_checkpoint_states, check_checkpoint_layout, checkpoint_states


def _my_share(names: list[str]) -> list[str]:
    """This rank's share of `names` (every world-size-th, starting at the rank)."""
    return names[dist.get_rank()::dist.get_world_size()]


def _gathered(mine: object) -> list[object]:
    """`mine` of every rank, in rank order (collective)."""
    every: list[object] = [None] * dist.get_world_size()
    dist.all_gather_object(every, mine)
    return every


def _checkpoint_problem(path: Path) -> str | None:
    """Why checkpoint `path` cannot be trusted, or None when every file matches its checksum (collective)."""
    recorded = expected_digests(path) if dist.get_rank() == 0 else None
    problem = listing_problem(path, recorded) if isinstance(recorded, dict) else recorded
    problem, recorded = _broadcast((problem, recorded))
    if problem is not None:
        return problem
    mine = next(filter(None, (digest_problem(path, name, recorded[name]) for name in _my_share(sorted(recorded)))),
                None)
    return next(filter(None, _gathered(mine)), None)


def _broadcast(value: object) -> object:
    """Rank 0's `value` on every rank (collective)."""
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def newest_good_checkpoint(output_dir: str | os.PathLike) -> tuple[Path | None, list[str]]:
    """The newest complete checkpoint whose files all match their checksums, or None (collective).

    Each bad one on the way is renamed to ``corrupt-step_<N>``; returns the
    path and one message per bad checkpoint (the same on every rank).
    """
    messages = []
    for _, path in _broadcast(complete_checkpoints(output_dir) if dist.get_rank() == 0 else None):
        problem = _checkpoint_problem(path)
        if problem is None:
            return path, messages
        moved = quarantine(path) if dist.get_rank() == 0 else None
        messages.append(f"checkpoint {path} is corrupt: {problem}; moved it aside to {_broadcast(moved)}")
    return None, messages


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
                    trainer: TrainerState, keep: int = 0) -> Path:
    """Write ``checkpoints/step_<trainer.step>`` with its checksums, then keep only the newest `keep`
    checkpoints (0: all) (collective: every rank calls it); returns its path."""
    root = checkpoints_dir(output_dir)
    final, temporary = root / f"step_{trainer.step}", root / f".tmp-step_{trainer.step}"
    if dist.get_rank() == 0:
        shutil.rmtree(temporary, ignore_errors=True)
        temporary.mkdir(parents=True)
    dist.barrier()
    model_state, optimizer_state = checkpoint_states(model, optimizer)
    state = {"model": model_state, "optimizer": optimizer_state, "trainer": _trainer_entry(trainer)}
    dcp.save(state, checkpoint_id=str(temporary))
    dist.barrier()
    names = checkpoint_data_files(temporary) if dist.get_rank() == 0 else None
    digests = {name: file_digest(temporary / name) for name in _my_share(_broadcast(names))}
    every = _gathered(digests)
    if dist.get_rank() == 0:
        write_checksums(temporary, {name: d for share in every for name, d in share.items()})
        shutil.rmtree(final, ignore_errors=True)
        os.replace(temporary, final)
        prune_checkpoints(output_dir, keep)
    dist.barrier()
    return final


def _trainer_entry(trainer: TrainerState) -> bytes:
    """The trainer state pickled into one leaf (DCP would flatten a nested dict into many keys)."""
    return pickle.dumps(asdict(trainer))


def load_checkpoint(path: str | os.PathLike, model: nn.Module, optimizer: torch.optim.Optimizer) -> TrainerState:
    """Load model and optimizer in place from `path` (collective); returns the trainer state to apply."""
    if not (Path(path) / METADATA).is_file():
        raise FileNotFoundError(f"checkpoint {path} is incomplete (no {METADATA}); resume from a complete one")
    check_checkpoint_layout(path, optimizer)
    model_state, optimizer_state = checkpoint_states(model, optimizer)
    state = {"model": model_state, "optimizer": optimizer_state, "trainer": b""}
    dcp.load(state, checkpoint_id=str(path))
    apply_checkpoint_states(model, optimizer, state["model"], state["optimizer"])
    return TrainerState(**pickle.loads(state["trainer"]))
