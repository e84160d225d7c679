"""`longctx profile`: measure the cost model's constants on this machine and write a cost profile.

    longctx profile                               # the default run's model (tiny) on 4 local gloo ranks
    longctx profile model=small parallel.nprocs=2 --out runs/profile/small.yaml
    longctx profile --quick                       # seconds: 3 lengths, 1 repeat (for tests)
    torchrun --nproc-per-node 8 -m longctx.cli profile model=llama3-8b    # on GPUs: the torchrun world

Hydra overrides select the model, world size and attention backend exactly as
for `longctx train`; the profile is for that model on that world. Use it with
``longctx plan --cost-profile FILE`` and ``longctx train parallel.cost_profile=FILE``.
"""
from __future__ import annotations

import argparse
import sys
from functools import partial
from pathlib import Path

DEFAULT_DIR = Path("runs/profile")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="longctx profile", description=__doc__.split("\n\n")[0],
                                     epilog="other arguments: Hydra overrides (key=value), as for longctx train")
    parser.add_argument("--quick", action="store_true", help="few lengths and repeats: seconds, for tests")
    parser.add_argument("--out", type=Path, help="profile file, .yaml/.yml or .json "
                                                 "(default runs/profile/<model>_<nprocs>ranks.yaml)")
    return parser


def _profile_rank(out: Path, quick: bool, command: str, run) -> None:
    """On every rank: measure; rank 0 writes the profile and prints a summary."""
    import torch.distributed as dist

    from longctx.profiling.profile import ProfileSettings, measure_profile

    profile = measure_profile(run, ProfileSettings.for_run(run, quick), command, out.parent)
    if dist.get_rank() == 0:
        profile.write(out)
        print(summary(profile))
        print(f"cost profile written to {out}")


def summary(profile) -> str:
    """A few lines: the measured constants and what was left at its default."""
    model = profile.cost_model
    lines = [f"linear {model.linear_ms_per_token:.3e} ms/token, attention {model.attention_ms_per_token2:.3e} "
             f"ms/token^2, per sequence {model.sequence_overhead_ms:.2f} ms, per step {model.step_overhead_ms:.1f} ms",
             f"{len(model.measured_shapes)} shapes measured (largest fit error "
             f"{100 * profile.measurements.get('shape_fit_error_max', 0.0):.1f}%)"]
    if model.core_shares:
        lines.append("core share (CPU s per busy s) " + ", ".join(f"{k} {v:.2f}" for k, v in model.core_shares.items()))
    lines += [f"link {name}: {value}" for name, value in profile.links.items()]
    lines += [f"not measured: {name}: {why}" for name, why in profile.not_measured.items()]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    args, overrides = _parser().parse_known_args(argv)
    stray = [o for o in overrides if "=" not in o]
    if stray:
        print(f"longctx profile: {stray} are neither options (--quick, --out) nor Hydra overrides key=value",
              file=sys.stderr)
        return 2
    from longctx.model.config import ModelConfigError
    from longctx.runtime.config import ConfigError
    from longctx.runtime.train_cli import compose_run_config

    try:
        run = compose_run_config(overrides)
    except (ConfigError, ModelConfigError) as error:
        print(f"longctx profile: {error}", file=sys.stderr)
        return 2
    out = args.out or DEFAULT_DIR / f"{run.model.name}_{run.parallel.nprocs}ranks.yaml"
    if out.suffix not in (".yaml", ".yml", ".json"):
        print(f"longctx profile: --out {str(out)!r} must end in .yaml, .yml or .json", file=sys.stderr)
        return 2
    body = partial(_profile_rank, out, args.quick, "longctx profile " + " ".join(argv))
    from longctx.runtime.world import run_in_external_world, run_spawned, under_torchrun

    if under_torchrun():
        run_in_external_world(run, body)
        return 0
    import torch.multiprocessing as mp

    try:
        run_spawned(run, body)
    except (mp.ProcessRaisedException, mp.ProcessExitedException) as error:
        print(f"longctx profile: a rank failed:\n{error}", file=sys.stderr)
        return 1
    return 0
