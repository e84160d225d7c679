"""Lazy access to megatron-core's IndexedDataset module (the .bin/.idx format).

Importing megatron-core costs ~5 s and pulls in its training stack, which warns
that Transformer Engine and Apex are absent (and trips torch deprecation
warnings); only the dataset format is used here, so the import happens on
first use and the warnings it raises while importing are silenced.
"""
from __future__ import annotations

import warnings
from types import ModuleType


def indexed_dataset_module() -> ModuleType:
    """``megatron.core.datasets.indexed_dataset``, imported on first call."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Transformer Engine and Apex are not installed.*")
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        from megatron.core.datasets import indexed_dataset
    return indexed_dataset
