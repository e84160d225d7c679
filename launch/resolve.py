"""Resolve the run's config with Hydra's compose API, exactly as the trainer will see it."""
from __future__ import annotations

import re
from pathlib import Path

from hydra import compose, initialize_config_dir, initialize_config_module
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

CONFIG_MODULE = "longctx.configs"
CONFIG_NAME = "config"


class ConfigResolutionError(ValueError):
    """The overrides do not compose into a config (unknown key, bad group choice, ...)."""


def resolve_run_config(overrides: list[str], config_dir: str | None = None) -> DictConfig:
    """Compose `config.yaml` of `config_dir` (default: the packaged `pkg://longctx.configs`)
    with the run's overrides; interpolations are resolved."""
    initialize = (
        initialize_config_module(config_module=CONFIG_MODULE, version_base=None)
        if config_dir is None
        else initialize_config_dir(config_dir=str(Path(config_dir).resolve()), version_base=None)
    )
    try:
        with initialize:
            config = compose(config_name=CONFIG_NAME, overrides=list(overrides))
        OmegaConf.resolve(config)
    except (HydraException, OmegaConfBaseException) as exc:
        where = config_dir or f"pkg://{CONFIG_MODULE}"
        raise ConfigResolutionError(f"the overrides {overrides} do not compose with {where}: {exc}") from exc
    return config


def output_dir_override(output_dir: str) -> str:
    """The override that points the trainer at the job's output directory."""
    return f"train.output_dir={quote_override_value(output_dir)}"


def quote_override_value(value: str) -> str:
    """A string as a Hydra override value, double-quoted.

    Hydra treats backslashes as escapes only before a quote (or before the closing
    quote), so exactly those backslash runs are doubled and each `"` is escaped.
    """
    escaped = re.sub(r'(\\*)("|\Z)', lambda m: m.group(1) * 2 + ('\\"' if m.group(2) else ""), value)
    return '"' + escaped + '"'
