"""The training loop: one Plan per step, executed on every rank of an initialised world.

Per step t (every rank): take step t's data and plan (sampled and planned one
step ahead by rank 0, broadcast; see `step_source`), create the plan's missing
process groups, let rank 0 start on step t+1, run the waves (forward +
backward), sum the gradients over the world, clip, AdamW + LR schedule, gather
the metrics, log them on rank 0, and decide together whether to stop.
Checkpoints every ``train.checkpoint_every`` steps, at a graceful stop and at
the end.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
from omegaconf import OmegaConf
from tqdm import tqdm

from longctx.data import DocumentDataset, StepSampler, default_corpus, load_tokenizer
from longctx.model import FLOPS_CONVENTION, Decoder
from longctx.runtime.checkpoint import (
    TrainerState, latest_checkpoint, load_checkpoint, rng_state, save_checkpoint, set_rng_state,
)
from longctx.runtime.config import RunConfig, run_config_dict
from longctx.runtime.grad_sync import all_reduce_gradients, clip_gradients
from longctx.runtime.metrics import gather_rank_results, step_metrics
from longctx.runtime.offload import offload_active
from longctx.runtime.optim import make_optimizer
from longctx.runtime.step_source import StepSource, make_planner, on_rank0
from longctx.runtime.process_groups import ProcessGroupCache
from longctx.runtime.step import run_plan
from longctx.runtime.stop import PREEMPTED_FILE, GracefulStop
from longctx.tracking import make_tracker

FINAL_METRICS = "final_metrics.json"


@dataclass
class TrainResult:
    """What `train` returns on every rank."""

    #: step -> loss of the steps this call ran (1-based step numbers)
    losses: dict[int, float] = field(default_factory=dict)
    #: metrics of every step this call ran (rank 0's view; identical numbers on every rank)
    metrics: list[dict[str, float]] = field(default_factory=list)
    #: the step the run stopped after (equals train.steps at a normal end)
    last_step: int = 0
    #: True when it stopped early (signal, STOP file, stop_after_steps) after a checkpoint
    preempted: bool = False
    #: the trained model (this rank's replica)
    model: torch.nn.Module | None = None


def _device() -> torch.device:
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _dataset(run: RunConfig) -> DocumentDataset:
    """The run's dataset; the default corpus is built once (file lock) and shared by the ranks."""
    if run.data.path is not None:
        return DocumentDataset(run.data.path)
    tokenizer = load_tokenizer(run.data.tokenizer)
    run.check_tokenizer_vocab(tokenizer.vocab_size)
    return DocumentDataset(default_corpus(run.data.cache_dir, tokenizer))


def _write_outputs_start(run: RunConfig, output_dir: Path) -> None:
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "config.yaml").write_text(OmegaConf.to_yaml(run_config_dict(run)))
    (output_dir / PREEMPTED_FILE).unlink(missing_ok=True)


def train(run: RunConfig) -> TrainResult:
    """Train on the current (initialised) torch.distributed world; call on every rank."""
    rank, world = dist.get_rank(), dist.get_world_size()
    run.parallel.check_world(world)
    device = _device()
    output_dir = Path(run.train.output_dir)
    if rank == 0:
        _write_outputs_start(run, output_dir)
    dist.barrier()

    sampler = on_rank0(lambda: StepSampler(_dataset(run), run.data.tokens_per_step, run.data.max_doc_tokens,
                                           run.data.seed))
    torch.manual_seed(run.train.seed)
    model = Decoder(run.model).to(device)
    optimizer, schedule = make_optimizer(model, run.optim, run.train.steps)
    start = latest_checkpoint(output_dir) if run.train.resume == "auto" else None
    first_step = 0
    if start is not None:
        saved = load_checkpoint(start, model, optimizer)
        schedule.load_state_dict(saved.schedule)
        if sampler is not None:
            sampler.load_state_dict(saved.sampler)
        set_rng_state(saved.rng)
        first_step = saved.step

    result = TrainResult(last_step=first_step, model=model)
    if first_step >= run.train.steps:
        if rank == 0:
            print(f"longctx train: {output_dir} already holds step {first_step} of train.steps={run.train.steps}; "
                  "nothing to do (raise train.steps, or use a new train.output_dir or train.resume=never)")
        return result
    tracker = make_tracker(run.tracker.kind if rank == 0 else "none", output_dir=str(output_dir),
                           run_name=run.tracker.run_name, config=run_config_dict(run), mode=run.tracker.mode)
    source = StepSource(sampler, make_planner(run.parallel, run.model, world))
    groups = ProcessGroupCache()
    stop = GracefulStop(output_dir)
    bar = tqdm(total=run.train.steps, initial=first_step, disable=not (run.train.progress and rank == 0),
               desc="train", unit="step", dynamic_ncols=True)
    try:
        source.prefetch()
        for step in range(first_step + 1, run.train.steps + 1):
            started = time.perf_counter()
            current = source.take()
            plan = current.plan
            groups.prepare(plan)
            if step < run.train.steps:
                source.prefetch()
            optimizer.zero_grad(set_to_none=True)
            mine = run_plan(model, plan, current.sequences, rank, groups,
                            attention_backend=run.parallel.attention_backend, device=device,
                            offload=run.memory.offload != "none")
            all_reduce_gradients(model.parameters())
            grad_norm = clip_gradients(model.parameters(), run.optim.grad_clip)
            lr = schedule.get_last_lr()[0]
            optimizer.step()
            schedule.step()
            rows = gather_rank_results(mine, device)
            metrics = step_metrics(rows, plan, run.model, time.perf_counter() - started, grad_norm, lr,
                                   run.parallel.peak_tflops_per_rank)
            metrics["activation_offload"] = float(offload_active(run.memory.offload != "none", device))
            tracker.log(metrics, step)
            result.losses[step], result.last_step = metrics["loss"], step
            result.metrics.append(metrics)
            bar.update(1)
            bar.set_postfix(loss=f"{metrics['loss']:.4f}", tok_s=f"{metrics['tokens_per_s']:.0f}")

            ran = step - first_step
            stopping = stop.agreed(also=run.train.stop_after_steps is not None and ran >= run.train.stop_after_steps)
            stopping = stopping and step < run.train.steps
            every = run.train.checkpoint_every
            if stopping or step == run.train.steps or (every and step % every == 0):
                save_checkpoint(output_dir, model, optimizer,
                                TrainerState(step, schedule.state_dict(), current.sampler_state, rng_state()))
            if stopping:
                result.preempted = True
                if rank == 0:
                    (output_dir / PREEMPTED_FILE).write_text(f"{step}\n")
                break
    finally:
        bar.close()
        source.close()
        stop.close()
        tracker.finish()
    if rank == 0 and not result.preempted:
        final = {"step": result.last_step, "flops_convention": FLOPS_CONVENTION, **result.metrics[-1]}
        (output_dir / FINAL_METRICS).write_text(json.dumps(final, indent=2) + "\n")
    return result
