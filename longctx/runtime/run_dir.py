"""The run directory before a run starts: writable, never two runs mixed, config changes recorded.

`check_output_dir`: ``train.output_dir`` is (or can be created as) a
directory this process can write, found by writing a probe file (permission
bits say nothing for root, and nothing about read-only mounts).

`prepare_run_dir` (call it holding the `run_lock.RunLock`), by case:

- ``train.resume=never`` and checkpoints present: ``train.on_existing``
  decides: ``error`` refuses (ConfigError), ``archive`` moves the old run's
  files (`RUN_FILES`) into ``archive-<UTC time>/``, ``overwrite`` deletes them;
- ``train.resume=auto`` and checkpoints present: the composed config is
  compared with the saved ``config.yaml``. Differences in `defines_checkpoint`
  keys (the model and the data: shape, tokenizer, dataset, packing, order)
  refuse the run with a ConfigError listing them, before anything is written;
  other differences (lr, steps, tracker, parallelism...) are allowed, printed
  and appended to ``config_history.jsonl`` (one JSON object per resume that
  changed something: time, checkpoint step, ``{key: [saved, new]}``).

Then it writes ``config.yaml`` (write, then rename) and removes a stale
``PREEMPTED``. It is idempotent: a second call with the same config changes
nothing, so the launcher and the trainer may both call it.
"""
from __future__ import annotations

import datetime
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from longctx.runtime.checkpoint_files import checkpoints_dir, complete_checkpoints, step_dirs
from longctx.runtime.config import ConfigError, RunConfig, run_config_dict
from longctx.runtime.stop import PREEMPTED_FILE

CONFIG_FILE = "config.yaml"
CONFIG_HISTORY = "config_history.jsonl"
#: what one run writes into its directory (moved by on_existing=archive, deleted by overwrite)
RUN_FILES = ("checkpoints", CONFIG_FILE, CONFIG_HISTORY, "metrics.jsonl", "final_metrics.json", PREEMPTED_FILE,
             "wandb")
#: key prefixes whose change alters what a checkpoint means; `_NOT_DEFINING` are exceptions
_DEFINING_PREFIXES = ("model.", "data.")
_NOT_DEFINING = ("data.cache_dir",)


def check_output_dir(output_dir: str | os.PathLike) -> None:
    """ConfigError unless `output_dir` is a directory this process can write (created if missing)."""
    path = Path(output_dir)
    where = f"train.output_dir={str(path)!r}"
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{where} is a file, not a directory; give a directory for the run's outputs")
    try:
        path.mkdir(parents=True, exist_ok=True)
        handle, probe = tempfile.mkstemp(dir=path, prefix=".write-probe-")
        os.close(handle)
        os.unlink(probe)
    except OSError as error:
        raise ConfigError(f"{where} cannot be written ({error.strerror or error}: {error.filename or path}); "
                          "give a directory this user can create and write") from None


def flatten(values: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a.b.c": leaf}`` of a nested dict."""
    if not isinstance(values, dict):
        return {prefix[:-1]: values}
    flat: dict[str, Any] = {}
    for key, value in values.items():
        flat.update(flatten(value, f"{prefix}{key}."))
    return flat


def defines_checkpoint(key: str) -> bool:
    """True when a change of config `key` changes what a saved checkpoint means."""
    return key.startswith(_DEFINING_PREFIXES) and key not in _NOT_DEFINING


def config_changes(saved: dict, composed: dict) -> dict[str, list]:
    """``{key: [saved, new]}`` of the settings that differ (keys the saved config lacks are new fields: skipped)."""
    old, new = flatten(saved), flatten(composed)
    return {key: [old[key], new.get(key)] for key in sorted(old) if key in old and old[key] != new.get(key)}


def _describe(changes: dict[str, list]) -> str:
    return "; ".join(f"{key}: {old!r} -> {new!r}" for key, (old, new) in changes.items())


def _write_text_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def _clear_old_run(output_dir: Path, mode: str) -> str:
    """Archive or delete the `RUN_FILES` of `output_dir`; returns what was done, in words."""
    present = [output_dir / name for name in RUN_FILES if (output_dir / name).exists()]
    if mode == "overwrite":
        for path in present:
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        return f"deleted the earlier run's files ({', '.join(p.name for p in present)}) (train.on_existing=overwrite)"
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M%S")
    archive = output_dir / f"archive-{stamp}"
    archive.mkdir()
    for path in present:
        os.replace(path, archive / path.name)
    return f"moved the earlier run's files into {archive} (train.on_existing=archive)"


def _check_resumed_config(output_dir: Path, composed: dict) -> list[str]:
    """Compare with the saved config.yaml: refuse checkpoint-defining changes, record the others."""
    saved_file = output_dir / CONFIG_FILE
    if not saved_file.is_file():
        return []
    saved = OmegaConf.to_container(OmegaConf.load(saved_file), resolve=True)
    changes = config_changes(saved, composed)
    defining = {key: change for key, change in changes.items() if defines_checkpoint(key)}
    if defining:
        raise ConfigError(
            f"train.output_dir={str(output_dir)!r} holds checkpoints of a run whose model or data differ from "
            f"this config: {_describe(defining)}. Resuming would load weights that mean something else: restore "
            "these settings to resume, or start a new run (another train.output_dir, or train.resume=never with "
            "train.on_existing=archive)"
        )
    if not changes:
        return []
    step = complete_checkpoints(output_dir)[0][0] if complete_checkpoints(output_dir) else None
    record = {"time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "checkpoint_step": step, "changes": changes}
    with open(output_dir / CONFIG_HISTORY, "a", encoding="utf-8") as history:
        history.write(json.dumps(record) + "\n")
    return [f"config changed since the saved run (recorded in {output_dir / CONFIG_HISTORY}): {_describe(changes)}"]


def prepare_run_dir(run: RunConfig) -> list[str]:
    """Make `train.output_dir` ready for `run` (see the module docstring); returns messages for the user.

    Raises ConfigError (nothing written) for a refused directory.
    """
    output_dir = Path(run.train.output_dir)
    check_output_dir(output_dir)
    composed = run_config_dict(run)
    messages = []
    held = [path.name for _, path in step_dirs(output_dir)]
    if held and run.train.resume == "never":
        if run.train.on_existing == "error":
            raise ConfigError(
                f"train.output_dir={str(output_dir)!r} holds checkpoints of an earlier run ({', '.join(held)} in "
                f"{checkpoints_dir(output_dir)}) and train.resume=never; set train.on_existing=archive (move them "
                "into an archive-<time>/ directory) or train.on_existing=overwrite (delete them), "
                "train.resume=auto to continue that run, or give another train.output_dir"
            )
        messages.append(_clear_old_run(output_dir, run.train.on_existing))
    elif held:
        messages += _check_resumed_config(output_dir, composed)
    _write_text_atomically(output_dir / CONFIG_FILE, OmegaConf.to_yaml(composed))
    (output_dir / PREEMPTED_FILE).unlink(missing_ok=True)
    return messages
