"""What `longctx train` checks and claims in the launching process, before any rank starts.

On top of the config's own validation (`compose_run_config`): the output
directory is a writable directory, the dataset files can be read, the cost
profile loads into the planner's cost model, the run directory's lock is
taken (a second run on it fails naming the holder; a stale lock is taken over
and reported) and the directory is prepared (`run_dir.prepare_run_dir`:
old checkpoints, config changes). A failure raises ConfigError or
RunDirLockedError with one sentence and leaves nothing behind but the
output directory itself.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from longctx.runtime.config import ConfigError, RunConfig
from longctx.runtime.run_dir import check_output_dir, prepare_run_dir
from longctx.runtime.run_lock import RunLock


def check_inputs_readable(run: RunConfig) -> None:
    """ConfigError unless the dataset files can be opened and the cost profile builds the planner's inputs."""
    prefixes = [("data.path", run.data.path)]
    prefixes += [(f"data.sources[{i}].path", source.path) for i, source in enumerate(run.data.sources)]
    for where, prefix in prefixes:
        for name in ([] if prefix is None else [prefix + ".bin", prefix + ".idx"]):
            try:
                with open(name, "rb") as handle:
                    handle.read(1)
            except OSError as error:
                raise ConfigError(f"{where}={prefix!r}: {name} cannot be read ({error.strerror}); "
                                  "give a dataset this user can read") from None
    if run.parallel.cost_profile is not None:
        from longctx.runtime.step_source import planning_setup

        try:
            planning_setup(run.parallel, run.model, run.parallel.nprocs)
        except Exception as error:  # noqa: BLE001 - any failure to load it (OSError, YAML, schema) is the user's input
            reason = " ".join(f"{type(error).__name__}: {error}".split())
            raise ConfigError(f"parallel.cost_profile={run.parallel.cost_profile!r} cannot be used ({reason}); "
                              "give a profile written by `longctx profile`, or null for the default") from None


def claim_run_dir(run: RunConfig, say: Callable[[str], None]) -> RunLock:
    """Check everything above, take the run directory's lock and prepare the directory; `say` gets each
    message for the user as it happens. Returns the held lock (release it when the run ends)."""
    check_output_dir(run.train.output_dir)
    check_inputs_readable(run)
    lock = RunLock(Path(run.train.output_dir))
    stale = lock.acquire()
    if stale:
        say(f"took over a stale lock of {stale.describe()}: that run ended without releasing it")
    try:
        for message in prepare_run_dir(run):
            say(message)
    except BaseException:
        lock.release()
        raise
    return lock
