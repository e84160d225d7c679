"""Hugging Face Llama-family weights in and out: `load_hf`, `load_hf_weights`, `save_hf`.

A Hugging Face model directory holds ``config.json`` and the weights in
safetensors: one ``model.safetensors``, or shards listed by
``model.safetensors.index.json`` (``weight_map``: tensor name -> shard file).
Tied models (``tie_word_embeddings``) store no ``lm_head.weight``. Every
tensor is checked by name and shape before anything is copied; tensors are
copied bit for bit (a cast only where the target dtype differs). Writes go
to a temporary directory renamed into place. Needs the ``safetensors``
package (extra ``hf``); transformers is never imported.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Callable, Mapping

import torch

from longctx.model.config import ModelConfig, ModelConfigError
from longctx.model.decoder import Decoder
from longctx.model.hf_config import HF_CONFIG, hf_config_dict
from longctx.model.hf_names import HEAD, HF_HEAD, hf_name, is_ignored_hf_name

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
#: shard size of `save_hf` (transformers' default is 5 GB as well)
DEFAULT_MAX_SHARD_BYTES = 5 * 1024**3


def _safetensors():
    try:
        import safetensors.torch
    except ImportError as error:  # pragma: no cover - the hf extra installs it
        raise ImportError("Hugging Face weights need the safetensors package: pip install 'longctx[hf]'") from error
    return safetensors.torch


def read_safetensors_dir(directory: str | Path) -> dict[str, torch.Tensor]:
    """Every tensor of a HF directory (sharded through the index, or one file), by HF name."""
    directory = Path(directory)
    index = directory / INDEX_FILE
    if index.is_file():
        files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    elif (directory / SINGLE_FILE).is_file():
        files = [SINGLE_FILE]
    else:
        raise FileNotFoundError(f"{directory}: neither {INDEX_FILE} nor {SINGLE_FILE}; give a Hugging Face model "
                                "directory with safetensors weights (PyTorch .bin files are not read)")
    tensors: dict[str, torch.Tensor] = {}
    for name in files:
        tensors.update(_safetensors().load_file(str(directory / name)))
    return tensors


def longctx_state(hf_tensors: Mapping[str, torch.Tensor], config: ModelConfig, where: str) -> dict[str, torch.Tensor]:
    """The `Decoder` state dict (longctx names) of HF tensors, checked against `config`'s shapes.

    Tied models take the head from the embedding (an ``lm_head.weight`` present
    anyway must equal it). Missing, unexpected or misshaped tensors raise
    ModelConfigError listing them.
    """
    expected = _expected_shapes(config)
    wanted = {hf_name(name): name for name in expected if not (config.tie_embeddings and name == HEAD)}
    present = {name for name in hf_tensors if not is_ignored_hf_name(name)}
    if config.tie_embeddings and HF_HEAD in present:
        if not torch.equal(hf_tensors[HF_HEAD], hf_tensors["model.embed_tokens.weight"]):
            raise ModelConfigError(f"{where}: tie_word_embeddings=true but {HF_HEAD} differs from the embedding; "
                                   "set tie_word_embeddings=false in config.json for an untied head")
        present.discard(HF_HEAD)
    missing, unexpected = sorted(set(wanted) - present), sorted(present - set(wanted))
    if missing or unexpected:
        raise ModelConfigError(f"{where}: the weights do not match config.json: missing {missing[:8]}"
                               f"{'...' if len(missing) > 8 else ''}, unexpected {unexpected[:8]}"
                               f"{'...' if len(unexpected) > 8 else ''}")
    state = {}
    for hf, name in wanted.items():
        tensor = hf_tensors[hf]
        if tuple(tensor.shape) != expected[name]:
            raise ModelConfigError(f"{where}: {hf} has shape {tuple(tensor.shape)}, config.json implies "
                                   f"{expected[name]}")
        state[name] = tensor
    if config.tie_embeddings:
        state[HEAD] = state["embedding.weight"]
    return state


def hf_state(state: Mapping[str, torch.Tensor], config: ModelConfig) -> dict[str, torch.Tensor]:
    """HF-named tensors of a longctx state dict (no ``lm_head.weight`` when tied), contiguous."""
    return {hf_name(name): tensor.contiguous() for name, tensor in state.items()
            if not (config.tie_embeddings and name == HEAD)}


def _expected_shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Parameter name -> shape of a `Decoder(config)` (built on the meta device: no memory, no init cost)."""
    with torch.device("meta"):
        model = Decoder(config)
    return {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()}


def load_hf_weights(model: Decoder, directory: str | Path) -> None:
    """Copy the weights of the HF directory into `model` (whose config must match it), in place."""
    state = longctx_state(read_safetensors_dir(directory), model.config, str(directory))
    with torch.no_grad():
        model.load_state_dict(state, strict=True)


def load_hf(directory: str | Path, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu"
            ) -> Decoder:
    """A `Decoder` with the config and weights of a local HF Llama-family directory (weights cast to `dtype`)."""
    model = Decoder(ModelConfig(hf_path=str(directory)))
    load_hf_weights(model, directory)
    return model.to(device=device, dtype=dtype)


def save_hf(model: Decoder, directory: str | Path, max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES) -> Path:
    """Write `model` as a HF directory (config.json + safetensors); see `write_hf_dir`."""
    return write_hf_dir(model.state_dict(), model.config, directory, max_shard_bytes)


def write_hf_dir(state: Mapping[str, torch.Tensor], config: ModelConfig, directory: str | Path,
                 max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES) -> Path:
    """Write a longctx state dict as a HF directory; shards of at most `max_shard_bytes` (one tensor may exceed it).

    One shard is written as ``model.safetensors``; more as
    ``model-0000i-of-0000n.safetensors`` with the index. The directory is
    assembled under a temporary name and renamed into place, replacing an
    earlier export (never a directory holding other files).
    """
    if max_shard_bytes < 1:
        raise ValueError(f"max_shard_bytes={max_shard_bytes} must be >= 1")
    directory = Path(directory)
    temporary = staged_directory(directory, _hf_file)
    tensors = {name: tensor.detach().cpu() for name, tensor in hf_state(state, config).items()}
    dtypes = {str(tensor.dtype).removeprefix("torch.") for tensor in tensors.values()}
    config_json = hf_config_dict(config, dtype=dtypes.pop() if len(dtypes) == 1 else "float32")
    (temporary / HF_CONFIG).write_text(json.dumps(config_json, indent=2) + "\n")
    shards = _shards(tensors, max_shard_bytes)
    if len(shards) == 1:
        _safetensors().save_file(shards[0], str(temporary / SINGLE_FILE), metadata={"format": "pt"})
    else:
        weight_map = {}
        for i, shard in enumerate(shards, start=1):
            file = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
            _safetensors().save_file(shard, str(temporary / file), metadata={"format": "pt"})
            weight_map.update(dict.fromkeys(shard, file))
        total = sum(t.numel() * t.element_size() for t in tensors.values())
        index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
        (temporary / INDEX_FILE).write_text(json.dumps(index, indent=2) + "\n")
    publish_directory(temporary, directory)
    return directory


def _hf_file(name: str) -> bool:
    return name in (HF_CONFIG, INDEX_FILE) or name.endswith(".safetensors")


def staged_directory(directory: Path, owns: Callable[[str], bool]) -> Path:
    """A fresh empty sibling ``.tmp-<name>`` to assemble `directory` in.

    An existing `directory` is replaced later only when every entry in it is
    one `owns` (an earlier output of the same kind); otherwise FileExistsError
    now, before any work, so a mistyped path never deletes unrelated files.
    """
    if directory.exists():
        entries = [entry.name for entry in directory.iterdir()] if directory.is_dir() else [directory.name]
        foreign = sorted(name for name in entries if not (directory.is_dir() and owns(name)))
        if foreign:
            raise FileExistsError(f"{directory} exists and holds {foreign[:5]}, which this output would replace; "
                                  "choose a new directory (or remove it yourself)")
    temporary = directory.with_name(f".tmp-{directory.name}")
    shutil.rmtree(temporary, ignore_errors=True)
    temporary.mkdir(parents=True)
    return temporary


def publish_directory(temporary: Path, directory: Path) -> None:
    """Move the assembled `temporary` to `directory`, replacing the earlier output there."""
    if directory.exists():
        shutil.rmtree(directory)
    os.replace(temporary, directory)


def _shards(tensors: dict[str, torch.Tensor], max_bytes: int) -> list[dict[str, torch.Tensor]]:
    """Tensors in order, cut into consecutive groups of at most `max_bytes` (a larger tensor gets its own)."""
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for name, tensor in tensors.items():
        nbytes = tensor.numel() * tensor.element_size()
        if shards[-1] and size + nbytes > max_bytes:
            shards.append({})
            size = 0
        shards[-1][name] = tensor
        size += nbytes
    return shards
