"""Loading the compiled ops of ``csrc/``: prebuilt, JIT-cached, or absent (never an error).

Two extensions:

- ``host``: C++ host ops (``csrc/host``), built with any C++ compiler.
- ``cuda``: fused CUDA kernels (``csrc/cuda``), need nvcc and a CUDA build of torch.

:func:`load` looks for, in order: the module built at install time
(``longctx._host_ops`` / ``longctx._cuda_ops``, see :func:`setup_extensions`), then a
JIT build in the cache directory whose name hashes the sources, torch and Python
versions (so a stale build is never picked up). It compiles only when asked
(``load(name, build=True)``, or ``python -m longctx.kernels.extension build``);
otherwise a missing extension is reported by :func:`why_unavailable` and the ops
fall back to torch. The cache root is ``$LONGCTX_EXT_CACHE`` or
``~/.cache/longctx/extensions``.

This module imports only torch and the standard library, so setup.py can load it by path.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType


@dataclass(frozen=True)
class ExtensionSpec:
    """One compiled extension: its module name and sources (relative to ``csrc/``)."""

    name: str
    prebuilt_module: str
    sources: tuple[str, ...]
    cuda: bool


EXTENSIONS: dict[str, ExtensionSpec] = {
    "host": ExtensionSpec("longctx_host_ops", "longctx._host_ops", ("host/zigzag_index.cpp",), cuda=False),
    "cuda": ExtensionSpec(
        "longctx_cuda_ops",
        "longctx._cuda_ops",
        ("cuda/attention_ops.cu", "cuda/attention_ops_bindings.cpp"),
        cuda=True,
    ),
}
_HEADERS = ("cuda/attention_ops.cuh",)
_CXX_FLAGS = ["-O3"]
_NVCC_FLAGS = ["-O3"]

_loaded: dict[str, ModuleType] = {}
_failures: dict[str, str] = {}


def csrc_dir() -> Path:
    """The ``csrc/`` directory: the installed ``longctx.csrc`` package, else the source tree."""
    spec = importlib.util.find_spec("longctx.csrc")
    if spec is not None and spec.submodule_search_locations:
        return Path(list(spec.submodule_search_locations)[0])
    return Path(__file__).resolve().parents[2] / "csrc"


def _spec(name: str) -> ExtensionSpec:
    if name not in EXTENSIONS:
        raise ValueError(f"unknown extension {name!r}; choose one of {sorted(EXTENSIONS)}")
    return EXTENSIONS[name]


def cache_dir(name: str) -> Path:
    """Build directory of extension `name` for the current sources, torch and Python."""
    import torch

    spec = _spec(name)
    digest = hashlib.sha256()
    for relative in spec.sources + (_HEADERS if spec.cuda else ()):
        digest.update((csrc_dir() / relative).read_bytes())
    digest.update(f"{torch.__version__}|{torch.version.cuda}|{sys.version}".encode())
    root = Path(os.environ.get("LONGCTX_EXT_CACHE", Path.home() / ".cache" / "longctx" / "extensions"))
    return root / f"{spec.name}-{digest.hexdigest()[:16]}"


def _import_file(module_name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _build(spec: ExtensionSpec, directory: Path) -> ModuleType:
    import torch
    from torch.utils import cpp_extension

    if spec.cuda and (torch.version.cuda is None or cpp_extension.CUDA_HOME is None):
        raise RuntimeError("the cuda extension needs a CUDA build of torch and the CUDA toolkit (nvcc)")
    directory.mkdir(parents=True, exist_ok=True)
    return cpp_extension.load(
        name=spec.name,
        sources=[str(csrc_dir() / s) for s in spec.sources],
        build_directory=str(directory),
        extra_cflags=_CXX_FLAGS,
        extra_cuda_cflags=_NVCC_FLAGS if spec.cuda else None,
        verbose=False,
    )


def load(name: str, *, build: bool = False) -> ModuleType | None:
    """The compiled extension `name` ("host" or "cuda"), or None when it is not available.

    With ``build=True`` a missing extension is JIT-compiled into :func:`cache_dir`
    (about a minute for "host" on two cores); a failed build is remembered and
    reported by :func:`why_unavailable`, never raised.
    """
    spec = _spec(name)
    if name in _loaded:
        return _loaded[name]
    try:
        _loaded[name] = importlib.import_module(spec.prebuilt_module)
        return _loaded[name]
    except ImportError:
        pass
    directory = cache_dir(name)
    built = directory / f"{spec.name}.so"
    try:
        if built.exists():
            _loaded[name] = _import_file(spec.name, built)
        elif build and name not in _failures:
            _loaded[name] = _build(spec, directory)
    except Exception as exc:  # a compiler or toolkit problem must never break a plain install
        _failures[name] = f"{type(exc).__name__}: {str(exc).strip()[-500:]}"
    return _loaded.get(name)


def why_unavailable(name: str) -> str | None:
    """None when extension `name` is loaded, else why not (not built, or the build error)."""
    if load(name) is not None:
        return None
    if name in _failures:
        return f"building the {name} extension failed ({_failures[name]})"
    return (
        f"the {name} extension is not built; build it with `python -m longctx.kernels.extension build {name}` "
        "or install with LONGCTX_BUILD_EXT=1"
    )


def setup_extensions() -> tuple[list, dict]:
    """(ext_modules, cmdclass) for setup.py when LONGCTX_BUILD_EXT=1: the host extension always,
    the CUDA one when torch is a CUDA build and nvcc is found. Paths are relative to the repo root."""
    import torch
    from torch.utils import cpp_extension

    def sources(spec: ExtensionSpec) -> list[str]:
        return [f"csrc/{s}" for s in spec.sources]

    host = EXTENSIONS["host"]
    modules = [cpp_extension.CppExtension(host.prebuilt_module, sources(host), extra_compile_args=_CXX_FLAGS)]
    cuda = EXTENSIONS["cuda"]
    if torch.version.cuda is not None and cpp_extension.CUDA_HOME is not None:
        modules.append(cpp_extension.CUDAExtension(
            cuda.prebuilt_module, sources(cuda), extra_compile_args={"cxx": _CXX_FLAGS, "nvcc": _NVCC_FLAGS}
        ))
    return modules, {"build_ext": cpp_extension.BuildExtension}


def main(argv: list[str] | None = None) -> int:
    """``python -m longctx.kernels.extension build [host|cuda ...]``: JIT-build into the cache."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] != "build":
        print("usage: python -m longctx.kernels.extension build [host] [cuda]")
        return 2
    names = argv[1:] or list(EXTENSIONS)
    status = 0
    for name in names:
        module = load(name, build=True)
        print(f"{name}: {'ok (' + str(cache_dir(name)) + ')' if module else why_unavailable(name)}")
        status |= module is None
    return status


if __name__ == "__main__":
    sys.exit(main())
