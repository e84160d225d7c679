"""A small long-tailed dataset and tiny run configs shared by the runtime tests."""
from __future__ import annotations

import json
import random

import pytest

from longctx.data import ByteTokenizer, ingest
from longctx.runtime.config import RunConfig
from longctx.runtime.train_cli import compose_run_config

#: document lengths in bytes: a long tail (one piece over the cap), short ones, a 1-byte one
DOCUMENT_LENGTHS = [383, 12, 150, 90, 700, 33, 5, 260, 1, 47, 128, 300, 64, 20, 511, 2, 95, 240, 18, 410] * 3


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> str:
    """Prefix of a megatron-core dataset of DOCUMENT_LENGTHS random-text documents (byte tokens)."""
    root = tmp_path_factory.mktemp("runtime-data")
    rng = random.Random(0)
    alphabet = "abcdefghij klmnop\nqrstuvwxyz(){}=+-_.,:;"
    with open(root / "docs.jsonl", "w") as f:
        for length in DOCUMENT_LENGTHS:
            f.write(json.dumps({"text": "".join(rng.choice(alphabet) for _ in range(length))}) + "\n")
    return ingest([str(root / "docs.jsonl")], str(root / "docs"), ByteTokenizer())


def tiny_run(dataset: str, output_dir, *overrides: str) -> RunConfig:
    """A 4-step tiny run on `dataset` composed through Hydra, with `overrides` on top.

    optim.eps=1e-6: AdamW moves a weight by about ``lr * g / eps`` when its
    gradient g is far below eps, so with eps=1e-8 the fp32 summation-order noise
    of near-zero gradients (~1e-11, different for every plan) becomes a ~1e-6
    weight difference; eps=1e-6 keeps the comparison about the gradients.
    """
    return compose_run_config(tiny_overrides(dataset, output_dir, *overrides))


def tiny_overrides(dataset: str, output_dir, *overrides: str) -> list[str]:
    """The Hydra overrides of `tiny_run` (for `longctx train` command lines)."""
    return [
        f"data.path={dataset}", "data.tokens_per_step=1024", "data.max_doc_tokens=384",
        "train.steps=4", "train.checkpoint_every=0", "train.progress=false", f"train.output_dir={output_dir}",
        "optim.warmup_steps=1", "optim.eps=1e-6", "tracker=none", "parallel.max_tokens_per_rank=150", "parallel.time_limit_s=0.5",
        *overrides,
    ]
