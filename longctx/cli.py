"""The `longctx` command line: a thin dispatcher.

Each sub-command lives in the module that owns it and is imported only when
used, so `longctx plan` never imports torch and `longctx --help` is instant.
Every handler takes the remaining argv (a list of str) and returns an exit code.
"""
from __future__ import annotations

import importlib
import sys

#: sub-command -> ("module", "function", one-line help)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "train": ("longctx.runtime.train_cli", "main", "train a model (Hydra overrides follow)"),
    "plan": ("longctx.scheduler.cli", "plan_main", "plan one step's dynamic mesh"),
    "bench": ("longctx.benchmarks.cli", "main", "run a benchmark suite (scheduler|attention|train|kernels)"),
    "launch": ("longctx.launch.cli", "main", "launch a job (slurm|local|status|logs|cancel|collect)"),
    "demo": ("longctx.attention.demo", "main", "context-parallel attention demo on CPU processes"),
    "memory": ("longctx.scheduler.memory_cli", "main", "predicted per-rank peak memory of a step; --max-table"),
    "convert": ("longctx.runtime.hf_convert", "main", "convert checkpoints: to-hf | from-hf (Hugging Face)"),
    "data": ("longctx.data.cli", "main", "data tools: ingest text/.jsonl into a megatron-core dataset"),
    "eval": ("longctx.evaluation.cli", "main", "loss by position bucket on held-out documents of a run"),
    "profile": ("longctx.profiling.cli", "main", "measure the cost model on this machine (writes a cost profile)"),
}


def _usage() -> str:
    lines = ["usage: longctx <command> [args...]", "", "commands:"]
    lines += [f"  {name:<8} {help_}" for name, (_, _, help_) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"longctx: unknown command {name!r}; choose one of {sorted(COMMANDS)}", file=sys.stderr)
        return 2
    module_name, function_name, _ = COMMANDS[name]
    handler = getattr(importlib.import_module(module_name), function_name)
    return int(handler(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
