"""`longctx convert to-hf | from-hf`: longctx DCP checkpoints <-> Hugging Face model directories.

    longctx convert to-hf RUN_OR_CHECKPOINT OUT_DIR [--config config.yaml] [--max-shard-size 5GB] [--dtype D]
    longctx convert from-hf HF_DIR OUT_DIR

to-hf reads the model part of a DCP checkpoint (``<run>/checkpoints/step_N``,
or a run directory: its latest complete checkpoint; or a from-hf output)
and writes config.json + safetensors. The model shape comes from the run's
``config.yaml`` (``--config``, else next to the checkpoint, else the run's).
from-hf writes a DCP checkpoint holding only the model (``model.<name>``
keys, as training checkpoints) and a ``config.yaml`` with its ``model``
group. Tensors keep their dtype unless ``--dtype`` is given, so
to-hf(from-hf(dir)) reproduces the weights bit for bit. Single process: no
torch.distributed group is needed (DCP runs with no_dist).
"""
from __future__ import annotations

import argparse
import contextlib
import re
import warnings
from dataclasses import asdict
from pathlib import Path

import torch
import torch.distributed.checkpoint as dcp
import yaml
from torch.distributed.checkpoint.metadata import TensorStorageMetadata

from longctx.model.config import ModelConfig
from longctx.model.hf_weights import (
    DEFAULT_MAX_SHARD_BYTES, longctx_state, publish_directory, read_safetensors_dir, staged_directory, write_hf_dir,
)
from longctx.runtime.checkpoint_files import METADATA, complete_checkpoints

RUN_CONFIG = "config.yaml"
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
_SIZE = re.compile(r"^(\d+)\s*([KMG]?B)?$", re.IGNORECASE)
_UNITS = {None: 1, "B": 1, "KB": 1000, "MB": 1000**2, "GB": 1000**3}


@contextlib.contextmanager
def _single_process():
    """DCP without a process group, minus its warning that it assumes exactly that (no_dist=True says so)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled", category=UserWarning)
        yield


def checkpoint_model_state(checkpoint: str | Path) -> dict[str, torch.Tensor]:
    """The ``model`` entries of a DCP checkpoint, by longctx parameter name, in their stored dtype."""
    reader = dcp.FileSystemReader(str(checkpoint))
    tensors = {key.removeprefix("model."): torch.empty(meta.size, dtype=meta.properties.dtype)
               for key, meta in reader.read_metadata().state_dict_metadata.items()
               if key.startswith("model.") and isinstance(meta, TensorStorageMetadata)}
    if not tensors:
        raise ValueError(f"{checkpoint}: the checkpoint holds no model.* tensors; give a longctx checkpoint")
    state = {"model": tensors}
    with _single_process():
        dcp.load(state, storage_reader=reader, no_dist=True)
    return state["model"]


def to_hf(checkpoint: str | Path, out: str | Path, config_path: str | Path | None = None,
          max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES, dtype: torch.dtype | None = None) -> Path:
    """Write the HF directory `out` from a longctx checkpoint (or a run directory's latest); returns `out`."""
    checkpoint = _resolve_checkpoint(Path(checkpoint))
    config = _model_config(checkpoint, config_path)
    state = checkpoint_model_state(checkpoint)
    if dtype is not None:
        state = {name: tensor.to(dtype) for name, tensor in state.items()}
    return write_hf_dir(state, config, out, max_shard_bytes)


def from_hf(hf_dir: str | Path, out: str | Path) -> Path:
    """Write a model-only DCP checkpoint and its ``config.yaml`` into `out` from a HF directory; returns `out`."""
    out = Path(out)
    temporary = staged_directory(out, lambda name: name in (METADATA, RUN_CONFIG) or name.endswith(".distcp"))
    config = ModelConfig(hf_path=str(hf_dir))
    state = longctx_state(read_safetensors_dir(hf_dir), config, str(hf_dir))
    with _single_process():
        dcp.save({"model": state}, checkpoint_id=str(temporary), no_dist=True)
    (temporary / RUN_CONFIG).write_text(yaml.safe_dump({"model": {**asdict(config), "hf_path": None}}))
    publish_directory(temporary, out)
    return out


def _resolve_checkpoint(path: Path) -> Path:
    if (path / METADATA).is_file():
        return path
    complete = complete_checkpoints(path)
    if not complete:
        raise FileNotFoundError(f"{path} is neither a complete DCP checkpoint (no {METADATA}) nor a run directory "
                                "with complete checkpoints/step_<N>; give one of those")
    return complete[0][1]


def _model_config(checkpoint: Path, config_path: str | Path | None) -> ModelConfig:
    """The checkpoint's ModelConfig from a run's config.yaml (`config_path`, beside it, or the run's)."""
    candidates = [Path(config_path)] if config_path else [checkpoint / RUN_CONFIG,
                                                          checkpoint.parent.parent / RUN_CONFIG]
    found = next((path for path in candidates if path.is_file()), None)
    if found is None:
        raise FileNotFoundError(f"no run config among {[str(p) for p in candidates]}; pass --config "
                                "<the run's config.yaml>")
    section = yaml.safe_load(found.read_text()).get("model")
    if not isinstance(section, dict):
        raise ValueError(f"{found} has no 'model' section; give the config.yaml a run (or from-hf) wrote")
    # the shape there is already resolved; the HF directory a run started from may have moved since
    return ModelConfig(**{**section, "hf_path": None})


def parse_size(text: str) -> int:
    """Bytes of '5GB', '200MB', '1000' (decimal units, as transformers' max_shard_size)."""
    match = _SIZE.match(text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"--max-shard-size={text!r}: give bytes or a size such as 200MB or 5GB")
    return int(match.group(1)) * _UNITS[match.group(2).upper() if match.group(2) else None]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="longctx convert", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    export = commands.add_parser("to-hf", help="longctx checkpoint -> Hugging Face directory")
    export.add_argument("checkpoint", help="checkpoints/step_<N>, a run directory, or a from-hf output")
    export.add_argument("out", help="Hugging Face directory to write (replaced if present)")
    export.add_argument("--config", default=None, help="the run's config.yaml (default: found from the checkpoint)")
    export.add_argument("--max-shard-size", type=parse_size, default=DEFAULT_MAX_SHARD_BYTES)
    export.add_argument("--dtype", choices=sorted(_DTYPES), default=None, help="cast (default: keep stored dtype)")
    imported = commands.add_parser("from-hf", help="Hugging Face directory -> longctx checkpoint")
    imported.add_argument("hf_dir", help="local Hugging Face model directory (config.json + safetensors)")
    imported.add_argument("out", help="directory for the DCP checkpoint and its config.yaml")
    args = parser.parse_args(argv)
    if args.command == "to-hf":
        written = to_hf(args.checkpoint, args.out, args.config, args.max_shard_size,
                        _DTYPES[args.dtype] if args.dtype else None)
    else:
        written = from_hf(args.hf_dir, args.out)
    print(f"longctx convert {args.command}: wrote {written}")
    return 0
