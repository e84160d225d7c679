"""The launcher's own options (nodes, partition, container, ...), validated.

They live in the Hydra group `configs/launcher/` (`slurm.yaml`, `local.yaml`) and
are overridden on the command line as `launcher.<field>=<value>`; the rest of the
overrides configure the training run itself.
"""
from __future__ import annotations

import dataclasses
import importlib.resources
import re
from typing import Any

from omegaconf import OmegaConf

from longctx.launch.overrides import parse_override
from longctx.launch.shell import ScriptValueError, require_single_line

CONTAINER_RUNTIMES = (None, "pyxis", "apptainer")
_MODULE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class LauncherConfigError(ValueError):
    """A launcher option has a value that cannot work; the message names field, value and fix."""


def _require_single_line(field: str, value: str | None) -> None:
    if value is not None:
        try:
            require_single_line(f"launcher.{field}", value)
        except ScriptValueError as error:
            raise LauncherConfigError(str(error)) from None


def _require_int(field: str, value: Any, minimum: int, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise LauncherConfigError(f"launcher.{field}={value!r} must be an integer >= {minimum}")


@dataclasses.dataclass
class ContainerConfig:
    """Where the job's processes run: on the host (runtime None) or in a container.

    pyxis/enroot: `srun --container-image=<image> --container-mounts=<mounts>`;
    apptainer: `srun apptainer exec --bind <mounts> <image> ...`.
    """

    runtime: str | None = None
    #: pyxis: an image URI (`nvcr.io#nvidia/pytorch:...`) or a .sqsh file; apptainer: a .sif file
    image: str | None = None
    #: "host_path:container_path[:flags]" entries
    mounts: list[str] = dataclasses.field(default_factory=list)

    def __post_init__(self) -> None:
        if self.runtime not in CONTAINER_RUNTIMES:
            raise LauncherConfigError(
                f"launcher.container.runtime={self.runtime!r} is not supported; choose one of {CONTAINER_RUNTIMES}"
            )
        if self.runtime is not None and not self.image:
            raise LauncherConfigError(
                f"launcher.container.runtime={self.runtime!r} needs launcher.container.image (an image URI or file)"
            )
        self.mounts = [str(m) for m in self.mounts]
        for mount in self.mounts:
            if "," in mount or any(ch in mount for ch in "\n\r\0"):
                raise LauncherConfigError(
                    f"launcher.container.mounts entry {mount!r} contains a comma or newline; "
                    "give one 'host:container' path pair per entry"
                )


@dataclasses.dataclass
class LauncherConfig:
    """Options of one launch; see configs/launcher/slurm.yaml for each field's meaning."""

    nodes: int = 1
    #: None: gpus_per_node on a GPU job, else 1
    procs_per_node: int | None = None
    gpus_per_node: int = 0
    cpus_per_task: int | None = None
    mem: str | None = None
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    time: str | None = "01:00:00"
    constraint: str | None = None
    job_name: str = "longctx"
    output_root: str = "runs"
    #: seconds between USR2 and the time limit
    grace_seconds: int = 120
    #: seconds a node waits for the c10d rendezvous
    rdzv_timeout: int = 300
    rdzv_port: int | None = None
    requeue: bool = True
    python: str | None = None
    module: str = "longctx.cli"
    args: list[str] = dataclasses.field(default_factory=lambda: ["train"])
    env: dict[str, str] = dataclasses.field(default_factory=dict)
    container: ContainerConfig = dataclasses.field(default_factory=ContainerConfig)

    def __post_init__(self) -> None:
        if isinstance(self.container, dict):
            self.container = ContainerConfig(**self.container)
        _require_int("nodes", self.nodes, 1)
        _require_int("gpus_per_node", self.gpus_per_node, 0)
        if self.procs_per_node is None:
            self.procs_per_node = self.gpus_per_node or 1
        _require_int("procs_per_node", self.procs_per_node, 1)
        _require_int("cpus_per_task", self.cpus_per_task, 1, allow_none=True)
        _require_int("grace_seconds", self.grace_seconds, 1)
        _require_int("rdzv_timeout", self.rdzv_timeout, 1)
        _require_int("rdzv_port", self.rdzv_port, 1, allow_none=True)
        if self.rdzv_port is not None and self.rdzv_port > 65535:
            raise LauncherConfigError(f"launcher.rdzv_port={self.rdzv_port} must be a TCP port (1..65535)")
        for field in ("mem", "partition", "account", "qos", "time", "constraint", "job_name", "python"):
            value = getattr(self, field)
            if value is not None:
                setattr(self, field, str(value))
            _require_single_line(field, getattr(self, field))
        _require_single_line("output_root", self.output_root)
        if "%" in self.output_root:
            raise LauncherConfigError(
                f"launcher.output_root={self.output_root!r} contains '%', which SLURM reads as a file-name "
                "pattern; choose a directory without '%'"
            )
        if not _MODULE_NAME.match(self.module):
            raise LauncherConfigError(
                f"launcher.module={self.module!r} is not a Python module name (e.g. longctx.cli)"
            )
        self.args = [str(a) for a in self.args]
        self.env = {str(k): str(v) for k, v in self.env.items()}
        for name in self.env:
            if not _ENV_NAME.match(name):
                raise LauncherConfigError(
                    f"launcher.env has the variable name {name!r}; names are letters, digits and '_' "
                    "and do not start with a digit"
                )

    @property
    def world_size(self) -> int:
        """Worker processes over all nodes."""
        return self.nodes * self.procs_per_node


def _preset(name: str) -> dict[str, Any]:
    resource = importlib.resources.files("longctx.configs").joinpath("launcher", f"{name}.yaml")
    if not resource.is_file():
        raise LauncherConfigError(f"no launcher preset {name!r}: configs/launcher/{name}.yaml does not exist")
    return OmegaConf.to_container(OmegaConf.create(resource.read_text()), resolve=True)


def load_launcher_config(preset: str, overrides: list[str]) -> LauncherConfig:
    """The preset `configs/launcher/<preset>.yaml` with `launcher.<field>=<value>` overrides applied."""
    config = OmegaConf.create(_preset(preset))
    for text in overrides:
        key, value = parse_override(text)
        field = key.removeprefix("launcher.")
        if field.split(".")[0] not in {f.name for f in dataclasses.fields(LauncherConfig)}:
            raise LauncherConfigError(
                f"unknown launcher option {key!r} (in {text!r}); the options are the fields of "
                f"configs/launcher/{preset}.yaml"
            )
        OmegaConf.update(config, field, value, merge=False, force_add=True)
    values = OmegaConf.to_container(config, resolve=True)
    unknown = set(values) - {f.name for f in dataclasses.fields(LauncherConfig)}
    if unknown:
        raise LauncherConfigError(f"configs/launcher/{preset}.yaml has unknown fields {sorted(unknown)}")
    return LauncherConfig(**values)
