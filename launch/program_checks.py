"""Check a program's arguments on the submit host, before a job waits in the queue.

A run that cannot start (an unknown key, a token budget below the document cap,
a missing dataset) should fail at `longctx launch`, not hours later on the
nodes. Programs that offer such a check are listed here; each check takes the
run's argument list and raises a ValueError whose message names the problem.
"""
from __future__ import annotations

import contextlib
import importlib
import importlib.abc
import sys

from longctx.launch.launcher_config import LauncherConfig

#: (module, first program argument) -> "module:function" checking the remaining arguments
PROGRAM_CHECKS: dict[tuple[str, str], str] = {
    ("longctx.cli", "train"): "longctx.runtime.train_cli:compose_run_config",
}


def check_program_arguments(launcher: LauncherConfig, run_args: list[list[str]], config_dir: str | None) -> None:
    """Run the program's own check on every run's arguments (skipped for a custom config tree,
    which the program's check would not see)."""
    if config_dir is not None or not launcher.args:
        return
    target = PROGRAM_CHECKS.get((launcher.module, launcher.args[0]))
    if target is None:
        return
    module_name, function_name = target.split(":")
    with torch_imports_refused(target):
        check = getattr(importlib.import_module(module_name), function_name)
        for args in run_args:
            check([*launcher.args[1:], *args])


class _RefuseTorch(importlib.abc.MetaPathFinder):
    """Import hook that fails any import of torch, naming the check that tried."""

    def __init__(self, target: str) -> None:
        self.target = target

    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError(f"the submit-time check {self.target} imported {name}; the launcher must never "
                              "import torch (login nodes often lack a CUDA torch): keep that check torch-free")
        return None


@contextlib.contextmanager
def torch_imports_refused(target: str):
    """Within the block, importing torch raises ImportError (the launcher runs the training stack's checks
    in its own process, so those must stay torch-free; see STYLE.md)."""
    if "torch" in sys.modules:  # imported by the caller (a test process): nothing left to protect
        yield
        return
    finder = _RefuseTorch(target)
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)
