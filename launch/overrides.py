"""Hydra command-line overrides: parse them, and split the launcher's from the run's."""
from __future__ import annotations

from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException

LAUNCHER_PREFIX = "launcher."


class OverrideError(ValueError):
    """An override that Hydra's grammar cannot parse, or one used where it cannot work."""


def parse(text: str):
    """The Hydra `Override` object of one `key=value` string (raises OverrideError)."""
    try:
        return OverridesParser.create().parse_override(text)
    except HydraException as exc:
        raise OverrideError(
            f"cannot parse the override {text!r}: {exc}. Write key=value; quote values with "
            "spaces or special characters Hydra-style, e.g. key='a value'"
        ) from exc


def parse_override(text: str) -> tuple[str, Any]:
    """`(key, python value)` of a plain (non-sweep) override such as `launcher.nodes=2`."""
    override = parse(text)
    if override.is_sweep_override():
        raise OverrideError(f"{text!r} is a sweep; sweeps need -m and apply to the run's config only")
    return override.get_key_element().lstrip("+~"), override.value()


def is_launcher_override(text: str) -> bool:
    """True for `launcher.<field>=...` (also with Hydra's `+`/`++` prefixes)."""
    return text.lstrip("+~").startswith(LAUNCHER_PREFIX)


def split_overrides(overrides: list[str]) -> tuple[list[str], list[str]]:
    """`(launcher overrides, run overrides)`, each in the order given."""
    launcher = [o for o in overrides if is_launcher_override(o)]
    run = [o for o in overrides if not is_launcher_override(o)]
    return launcher, run
