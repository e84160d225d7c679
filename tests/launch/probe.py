"""A tiny program for launch tests: run by torchrun as `python -m tests.launch.probe <overrides>`.

Every rank joins the gloo world from torchrun's environment and all-reduces
(rank + 1); rank 0 writes `<train.output_dir>/probe.json` with the world size,
the sum, its argv and the MSG environment variable, so a test sees exactly what
the job received.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from longctx.launch.overrides import parse_override


def main(argv: list[str]) -> int:
    overrides = dict(parse_override(a) for a in argv)
    dist.init_process_group("gloo")
    value = torch.tensor([float(dist.get_rank() + 1)])
    dist.all_reduce(value)
    if dist.get_rank() == 0:
        report = {"world_size": dist.get_world_size(), "sum": value.item(), "argv": argv, "msg": os.environ.get("MSG")}
        Path(overrides["train.output_dir"], "probe.json").write_text(json.dumps(report))
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
