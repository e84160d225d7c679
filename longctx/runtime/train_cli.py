"""`longctx train [hydra overrides]`: compose and validate the config, then train.

Everything is checked before a process starts: the overrides compose with
`pkg://longctx.configs` (unknown group options and keys fail here), the
structured config validates (ranks, token budget vs document cap, data path,
model heads, world vs static CP size, tokenizer vs vocabulary). Then it joins
an external torchrun/srun world when one is present, or spawns
`parallel.nprocs` local processes (gloo on CPU, nccl on CUDA).

Exit codes: 0 done (also after a graceful stop, see `longctx.runtime.stop`),
2 bad configuration, 1 a rank failed.
"""
from __future__ import annotations

import sys

from longctx.model import ModelConfigError
from longctx.runtime.config import ConfigError, RunConfig, to_run_config

CONFIG_MODULE = "longctx.configs"
CONFIG_NAME = "config"
GROUPS = ("model", "parallel", "data", "optim", "train", "tracker", "experiment")


def group_options() -> dict[str, list[str]]:
    """The options of every config group (the yaml files of `configs/<group>/`)."""
    from importlib.resources import files

    root = files(CONFIG_MODULE)
    return {group: sorted(e.name[:-5] for e in (root / group).iterdir() if e.name.endswith(".yaml"))
            for group in GROUPS}


def compose_run_config(overrides: list[str]) -> RunConfig:
    """Compose `config.yaml` with `overrides` and validate it; raises ConfigError naming the problem."""
    from hydra import compose, initialize_config_module
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        with initialize_config_module(config_module=CONFIG_MODULE, version_base=None):
            composed = compose(config_name=CONFIG_NAME, overrides=list(overrides))
    except (HydraException, OmegaConfBaseException) as error:
        raise ConfigError(f"the overrides {list(overrides)} do not compose: {error}") from None
    run = to_run_config(composed)
    run.parallel.check_world(run.parallel.nprocs)
    if run.data.path is None:
        from longctx.data import load_tokenizer

        run.check_tokenizer_vocab(load_tokenizer(run.data.tokenizer).vocab_size)
    return run


def _train(run: RunConfig) -> None:
    from longctx.runtime.trainer import train

    train(run)


def _usage() -> str:
    groups = "\n".join(f"  {g:<10} {' | '.join(o)}" for g, o in group_options().items())
    return ("usage: longctx train [group=option ...] [key=value ...]   (Hydra overrides)\n\n"
            f"config groups (configs/<group>/<option>.yaml):\n{groups}\n\n"
            "examples:\n  longctx train\n  longctx train parallel=static parallel.cp=4 train.steps=10\n"
            "  longctx train model=small tracker=wandb train.output_dir=runs/small")


def main(argv: list[str]) -> int:
    if any(arg in ("-h", "--help") for arg in argv):
        print(_usage())
        return 0
    try:
        run = compose_run_config(argv)
    except (ConfigError, ModelConfigError) as error:
        print(f"longctx train: {error}", file=sys.stderr)
        return 2
    from longctx.runtime.world import run_in_external_world, run_spawned, under_torchrun

    if under_torchrun():
        run_in_external_world(run, _train)
        return 0
    import torch.multiprocessing as mp

    try:
        run_spawned(run, _train)
    except (mp.ProcessRaisedException, mp.ProcessExitedException) as error:
        print(f"longctx train: a rank failed:\n{error}", file=sys.stderr)
        return 1
    return 0
