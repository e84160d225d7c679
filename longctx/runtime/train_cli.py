"""`longctx train [hydra overrides]`: compose and validate the config, then train.

Everything is checked before a process starts: the overrides compose with
`pkg://longctx.configs` (unknown group options and keys fail here), the
structured config validates (ranks, token budget vs document cap, data path,
model heads, world vs static CP size, tokenizer vs vocabulary), and
`preflight.claim_run_dir` checks the output directory (a writable directory),
the data and cost profile (readable), takes the run directory's lock and
prepares it (old checkpoints, changed config), in this process (rank 0's
under torchrun). Then it joins an external torchrun/srun world when one is
present, or spawns `parallel.nprocs` local processes (gloo on CPU, nccl on
CUDA).

Exit codes: 0 done (also after a graceful stop, see `longctx.runtime.stop`),
2 bad configuration or a run directory in use, 3 stopped on a non-finite loss
or gradient (`longctx.runtime.finite_guard`), 1 a rank failed.
"""
from __future__ import annotations

import os
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

        run.check_tokenizer_vocab(load_tokenizer(run.data.tokenizer, cache_dir=run.data.cache_dir).vocab_size)
    return run


def _train(run: RunConfig) -> None:
    """One rank's run; a non-finite stop exits NONFINITE_EXIT with rank 0's one-line message, no traceback."""
    import torch.distributed as dist

    from longctx.runtime.finite_guard import NONFINITE_EXIT, NonFiniteError
    from longctx.runtime.trainer import train

    try:
        train(run)
    except NonFiniteError as error:
        if dist.get_rank() == 0:
            print(f"longctx train: {error}", file=sys.stderr, flush=True)
        raise SystemExit(NONFINITE_EXIT) from None


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
    from longctx.runtime.preflight import claim_run_dir
    from longctx.runtime.run_lock import RunDirLockedError
    from longctx.runtime.world import under_torchrun

    lock = None
    try:
        run = compose_run_config(argv)
        if not under_torchrun() or os.environ["RANK"] == "0":
            lock = claim_run_dir(run, say=lambda message: print(f"longctx train: {message}", flush=True))
    except (ConfigError, ModelConfigError, RunDirLockedError) as error:
        print(f"longctx train: {error}", file=sys.stderr)
        return 2
    try:
        return _run_ranks(run)
    finally:
        if lock is not None:
            lock.release()


def _run_ranks(run: RunConfig) -> int:
    """Run the ranks (join torchrun's world, or spawn them); the exit code."""
    from longctx.runtime.finite_guard import NONFINITE_EXIT
    from longctx.runtime.world import run_in_external_world, run_spawned, under_torchrun

    if under_torchrun():
        run_in_external_world(run, _train)
        return 0
    import torch.multiprocessing as mp

    try:
        run_spawned(run, _train)
    except mp.ProcessExitedException as error:
        if error.exit_code == NONFINITE_EXIT:
            return NONFINITE_EXIT
        print(f"longctx train: a rank failed:\n{error}", file=sys.stderr)
        return 1
    except mp.ProcessRaisedException as error:
        print(f"longctx train: a rank failed:\n{error}", file=sys.stderr)
        return 1
    return 0
