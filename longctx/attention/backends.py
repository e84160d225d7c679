"""Registry of local attention kernels (backends).

Every backend implements the interface documented in
`longctx.attention.reference`::

    forward(q, k, v, q_doc, q_pos, k_doc, k_pos, softmax_scale) -> (out, lse)
    backward(dout, q, k, v, out, lse, q_doc, q_pos, k_doc, k_pos, softmax_scale) -> (dq, dk, dv)

A backend is a module path plus an availability probe; modules are imported
only when asked for, so a missing optional dependency (Triton, a GPU) never
breaks import of longctx. Adding a backend is one `_REGISTRY` entry.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType
from typing import Callable

import torch


@dataclass(frozen=True)
class Backend:
    """A loaded backend: its name and its `forward` / `backward` functions."""

    name: str
    forward: Callable
    backward: Callable


class BackendUnavailableError(RuntimeError):
    """A backend that was asked for by name cannot run here."""


def _import(module: str) -> tuple[ModuleType | None, str | None]:
    """(module, None) or (None, why it cannot be imported)."""
    try:
        return importlib.import_module(module), None
    except ImportError as exc:
        return None, f"module {module} cannot be imported ({exc})"


def _reference_probe(device: torch.device) -> tuple[ModuleType | None, str | None]:
    return _import("longctx.attention.reference")


def _triton_probe(device: torch.device) -> tuple[ModuleType | None, str | None]:
    module, why = _import("longctx.kernels.triton_attention")
    if module is None:
        return None, why
    if device.type != "cuda":
        return None, f"the triton backend runs on CUDA tensors; got device {device}"
    if not module.is_available():
        return None, "longctx.kernels.triton_attention.is_available() is False (no CUDA or no triton)"
    return module, None


def _self_probing(module_name: str) -> Callable[[torch.device], tuple[ModuleType | None, str | None]]:
    """Probe for a backend module that says itself why it cannot run: `why_unavailable(device) -> str | None`."""

    def probe(device: torch.device) -> tuple[ModuleType | None, str | None]:
        module, why = _import(module_name)
        if module is not None:
            why = module.why_unavailable(device)
        return (None, why) if why else (module, None)

    return probe


#: backend name -> probe(device) -> (module or None, reason it is unavailable)
_REGISTRY: dict[str, Callable[[torch.device], tuple[ModuleType | None, str | None]]] = {
    "reference": _reference_probe,
    "triton": _triton_probe,
    "sdpa": _self_probing("longctx.attention.sdpa_backend"),
    "flash_attn": _self_probing("longctx.attention.flash_attn_backend"),
}

#: tried in order by backend="auto", fastest first, for fp16/bf16 inputs and for fp32 (the flash kernels
#: take half precision only); "reference" always works
_AUTO_ORDER_HALF = ("flash_attn", "sdpa", "triton", "reference")
_AUTO_ORDER_FP32 = ("triton", "reference")


def backend_names() -> tuple[str, ...]:
    """Every registered backend name (available here or not)."""
    return tuple(_REGISTRY)


def available_backends(device: torch.device) -> list[str]:
    """Names of the backends that can run on `device`."""
    return [name for name, probe in _REGISTRY.items() if probe(device)[0] is not None]


def get_backend(name: str, device: torch.device, dtype: torch.dtype = torch.float32) -> Backend:
    """Load backend `name` for `device`; "auto" picks the first available of the order for `dtype`.

    On CPU "auto" is "reference" for every dtype (the kernel the exactness tests check); pick "sdpa" by name.
    """
    if name == "auto":
        half = dtype in (torch.float16, torch.bfloat16) and device.type == "cuda"
        for candidate in _AUTO_ORDER_HALF if half else _AUTO_ORDER_FP32:
            module, _ = _REGISTRY[candidate](device)
            if module is not None:
                return Backend(candidate, module.forward, module.backward)
    if name not in _REGISTRY:
        raise BackendUnavailableError(f"backend={name!r} is unknown; choose 'auto' or one of {backend_names()}")
    module, why = _REGISTRY[name](device)
    if module is None:
        raise BackendUnavailableError(f"backend={name!r} is unavailable on {device}: {why}")
    return Backend(name, module.forward, module.backward)
