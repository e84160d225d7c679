"""Functions the gloo pool runs on every rank for the profiling tests (module-level so they pickle)."""
from __future__ import annotations

from pathlib import Path

import torch
import torch.distributed as dist

from longctx.model import Decoder
from longctx.profiling.compute import Execution, measure_shapes
from longctx.profiling.links import alltoall_samples, p2p_samples
from longctx.profiling.profile import ProfileSettings, measure_profile
from longctx.scheduler import GroupShape

CPU = torch.device("cpu")


def links_case() -> dict:
    return {"p2p": p2p_samples(1, (4096, 4 << 20), 3, CPU),
            "alltoall": alltoall_samples(dist.get_world_size(), (4096, 4 << 20), 3, CPU)}


def shapes_case(model_config, lengths: tuple[int, ...]) -> list:
    torch.manual_seed(0)
    model = Decoder(model_config)
    shapes = [GroupShape.make(1, "local"), GroupShape.make(2, "ring"), GroupShape.make(2, "ulysses")]
    return measure_shapes(Execution(model, model_config.vocab_size, "auto", CPU, CPU, None, "fp32"), shapes, lengths, 1)


def trainer_memory_case(run, lengths: tuple[int, ...]) -> dict:
    """Time one ring shape as the profile does; report what the run's memory.* hooks saw."""
    torch.manual_seed(0)
    execution = Execution.for_run(run, Decoder(run.model), CPU, CPU)
    measure_shapes(execution, [GroupShape.make(2, "ring")], lengths, 1)
    accounting = execution.activations.accounting
    return {"offloaded_bytes": accounting.offloaded_bytes, "precision": execution.precision}


def profile_case(run, path: str) -> dict:
    profile = measure_profile(run, ProfileSettings.for_run(run, quick=True), "pytest", Path(path).parent)
    if dist.get_rank() == 0:
        profile.write(path)
    return profile.to_dict()


def train_case(run) -> list[dict]:
    from longctx.runtime.trainer import train

    return train(run).metrics
