"""The training loop: one Plan per step, executed on every rank of an initialised world.

`train` is a sequence of named steps (each a function below):

- `setup`: check the world, prepare the run directory (`run_dir`), build sampler, model, optimizer;
- `resume`: when `train.resume=auto`, load the newest checkpoint whose checksums verify (bad ones
  are moved aside and named) and announce it (stdout; ``resumed_from_step`` in the tracker);
- per step t: take step t's data and plan (sampled and planned one step ahead
  by rank 0, broadcast; see `step_source`), create the plan's missing process
  groups, let rank 0 start on step t+1, then `train_step` (waves forward +
  backward, the non-finite guard of `finite_guard`, sum the gradients over
  the world, clip, AdamW + LR schedule),
  `record_metrics` (gather, log on rank 0), `should_stop` (decided together),
  `checkpoint_due` / `save` (every ``train.checkpoint_every`` steps, at a
  graceful stop and at the end);
- `finish`: ``final_metrics.json`` (strict JSON) on rank 0 after a normal end.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
from tqdm import tqdm

from longctx.data import StepSampler
from longctx.model import FLOPS_CONVENTION, Decoder, load_hf_weights
from longctx.runtime.checkpoint import (
    TrainerState, load_checkpoint, newest_good_checkpoint, rng_state, save_checkpoint, set_rng_state,
)
from longctx.runtime.comm_device import comm_device
from longctx.runtime.config import RunConfig, run_config_dict
from longctx.runtime.data_setup import training_sampler
from longctx.runtime.finite_guard import check_global_grad_norm, check_local_values
from longctx.runtime.metrics import gather_rank_results, step_metrics
from longctx.runtime.activations import RankActivations
from longctx.runtime.memory_metrics import memory_metrics, model_state_bytes, start_step_memory
from longctx.runtime.optim import StepOptimizer, make_optimizer
from longctx.runtime.param_offload import every_weight_resident, parameter_offload, restore_weights
from longctx.runtime.step_source import StepInput, StepSource, make_planner, on_every_rank, planning_setup
from longctx.runtime.process_groups import ProcessGroupCache
from longctx.runtime.precision import resolve_precision
from longctx.runtime.step import RankStepResult, run_plan
from longctx.scheduler.step_prediction import StepTimePredictor
from longctx.runtime.resume_config import configured_hyperparameters, restore_hyperparameters
from longctx.runtime.run_dir import prepare_run_dir
from longctx.runtime.stop import PREEMPTED_FILE, GracefulStop
from longctx.tracking import make_tracker, strict_json

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


@dataclass
class TrainState:
    """What one `train` call holds across its steps (this rank's view)."""

    run: RunConfig
    rank: int
    world: int
    device: torch.device
    #: ``train.precision`` resolved for `device` ("bf16" or "fp32")
    precision: str
    output_dir: Path
    #: rank 0's sampler; None on the other ranks
    sampler: StepSampler | None
    model: Decoder
    optimizer: StepOptimizer
    schedule: torch.optim.lr_scheduler.LRScheduler
    #: the last step already done before this call (0, or the resumed checkpoint's step)
    first_step: int = 0
    #: ``predicted_step_ms``: the planner's cost model (its step overhead) and the load scale, updated every step
    prediction: StepTimePredictor | None = None
    #: memory.* on the activations: checkpoints, tiles, offload and saved-tensor accounting
    activations: RankActivations | None = None


def _say(rank: int, message: str) -> None:
    """Print `message` on stdout on rank 0."""
    if rank == 0:
        print(f"longctx train: {message}", flush=True)


def setup(run: RunConfig) -> TrainState:
    """Check the world, prepare the run directory (rank 0), build sampler, model and optimizer (collective)."""
    rank, world = dist.get_rank(), dist.get_world_size()
    run.parallel.check_world(world)
    output_dir = Path(run.train.output_dir)
    if rank == 0:  # idempotent: `longctx train` already did this before spawning (refusals raise here)
        for message in prepare_run_dir(run):
            _say(rank, message)
    dist.barrier()
    sampler = on_every_rank(lambda: training_sampler(run))
    torch.manual_seed(run.train.seed)
    device = comm_device()  # compute where the world communicates (see runtime.comm_device)
    model = Decoder(run.model).to(device)
    if run.model.hf_path is not None:
        load_hf_weights(model, run.model.hf_path)  # start from the Hugging Face checkpoint's weights
    precision = resolve_precision(run.train.precision, device)
    optimizer, schedule = make_optimizer(model, run.optim, run.train.steps, run.memory, precision)
    return TrainState(run, rank, world, device, precision, output_dir, sampler, model, optimizer, schedule,
                      prediction=StepTimePredictor(*planning_setup(run.parallel, run.model, world)),
                      activations=RankActivations(run.memory, model.parameters(), device,
                                                  parameter_offload(model, run.memory, optimizer)))


def resume(state: TrainState) -> None:
    """Load the newest good checkpoint into `state` when ``train.resume=auto``, saying so (collective).

    Corrupt checkpoints on the way are moved aside and named (see `checkpoint.newest_good_checkpoint`).
    """
    if state.run.train.resume != "auto":
        return
    start, problems = newest_good_checkpoint(state.output_dir)
    for problem in problems:
        _say(state.rank, problem)
    if start is None:
        if problems:
            _say(state.rank, "no good checkpoint is left; starting from step 0")
        return
    _say(state.rank, f"resuming from {start}{' (the newest good checkpoint)' if problems else ''}")
    configured = configured_hyperparameters(state.schedule)
    with every_weight_resident(state.activations.weights):
        saved = load_checkpoint(start, state.model, state.optimizer)
    state.schedule.load_state_dict(saved.schedule)
    restore_hyperparameters(state.schedule, configured)  # a changed optim.lr etc. applies from here
    if state.sampler is not None:
        state.sampler.load_state_dict(saved.sampler)
    set_rng_state(saved.rng)
    state.first_step = saved.step


def train_step(state: TrainState, step: int, current: StepInput,
               groups: ProcessGroupCache) -> tuple[RankStepResult, float, float]:
    """Forward + backward of this rank's part of `current.plan`, gradient sum, clip, optimizer and LR step.

    Returns this rank's result, the global gradient norm before clipping and the LR the step used.
    A non-finite loss or gradient norm on any rank raises `NonFiniteError` before the optimizer step.
    """
    run = state.run
    state.optimizer.zero_grad(set_to_none=True)
    start_step_memory(state.activations.accounting, state.device)
    mine = run_plan(state.model, current.plan, current.sequences, state.rank, groups,
                    attention_backend=run.parallel.attention_backend, device=state.device,
                    activations=state.activations, precision=state.precision)
    check_local_values(step, mine.loss, state.optimizer.local_gradients())
    grad_norm = state.optimizer.synchronize_gradients(run.optim.grad_clip)
    check_global_grad_norm(step, grad_norm)
    lr = state.schedule.get_last_lr()[0]
    state.optimizer.step()
    state.schedule.step()
    return mine, grad_norm, lr


def record_metrics(state: TrainState, current: StepInput, mine: RankStepResult, grad_norm: float, lr: float,
                   step_time_s: float) -> dict[str, float]:
    """The step's metrics gathered from every rank (collective)."""
    run = state.run
    rows = gather_rank_results(mine, state.device)
    metrics = step_metrics(rows, current.plan, run.model, step_time_s, grad_norm, lr,
                           run.parallel.peak_tflops_per_rank, state.prediction.cost_model.step_overhead_ms,
                           state.prediction.load_scale)
    metrics["expected_core_share"] = state.prediction.observe(current.plan, metrics["core_share"])
    metrics.update(memory_metrics(state.activations.accounting, state.device, model_state_bytes(
        state.model, state.optimizer.torch_optimizer, run.memory.optimizer_offload)))
    metrics["broadcast_bytes"] = float(current.broadcast_bytes)
    return metrics


def should_stop(state: TrainState, stop: GracefulStop, step: int) -> bool:
    """True on every rank when the run stops early after `step` (signal, STOP file, stop_after_steps; collective)."""
    limit = state.run.train.stop_after_steps
    stopping = stop.agreed(also=limit is not None and step - state.first_step >= limit)
    return stopping and step < state.run.train.steps


def checkpoint_due(state: TrainState, step: int, stopping: bool) -> bool:
    """A checkpoint after `step`: at a graceful stop, at the end and every ``train.checkpoint_every`` steps."""
    every = state.run.train.checkpoint_every
    return stopping or step == state.run.train.steps or bool(every and step % every == 0)


def save(state: TrainState, step: int, current: StepInput) -> None:
    """Checkpoint the state after `step` (collective)."""
    with every_weight_resident(state.activations.weights):
        save_checkpoint(state.output_dir, state.model, state.optimizer,
                        TrainerState(step, state.schedule.state_dict(), current.sampler_state, rng_state()),
                        keep=state.run.train.keep_checkpoints)


def mark_preempted(state: TrainState, step: int) -> None:
    """Rank 0 writes the PREEMPTED file naming the step the run stopped after."""
    if state.rank == 0:
        (state.output_dir / PREEMPTED_FILE).write_text(f"{step}\n")


def finish(state: TrainState, result: TrainResult) -> None:
    """``final_metrics.json`` (rank 0) after a normal end."""
    if state.rank == 0 and not result.preempted:
        final = {"step": result.last_step, "flops_convention": FLOPS_CONVENTION, **result.metrics[-1]}
        (state.output_dir / FINAL_METRICS).write_text(strict_json.dumps(final, indent=2) + "\n")


def train(run: RunConfig) -> TrainResult:
    """Train on the current (initialised) torch.distributed world; call on every rank."""
    state = setup(run)
    resume(state)
    result = TrainResult(last_step=state.first_step, model=state.model)
    if state.first_step >= run.train.steps:
        if state.rank == 0:
            print(f"longctx train: {state.output_dir} already holds step {state.first_step} of "
                  f"train.steps={run.train.steps}; nothing to do (raise train.steps, or use a new "
                  "train.output_dir or train.resume=never)")
        restore_weights(state.activations.weights)
        return result
    tracker = make_tracker(run.tracker.kind if state.rank == 0 else "none", output_dir=str(state.output_dir),
                           run_name=run.tracker.run_name, config=run_config_dict(run), mode=run.tracker.mode)
    source = StepSource(state.sampler, make_planner(run.parallel, run.model, state.world, run.memory,
                                                    state.precision))
    groups = ProcessGroupCache()
    stop = GracefulStop(state.output_dir)
    bar = tqdm(total=run.train.steps, initial=state.first_step, disable=not (run.train.progress and state.rank == 0),
               desc="train", unit="step", dynamic_ncols=True)
    try:
        source.prefetch()
        for step in range(state.first_step + 1, run.train.steps + 1):
            started = time.perf_counter()
            current = source.take()
            groups.prepare(current.plan)
            if step < run.train.steps:
                source.prefetch()
            mine, grad_norm, lr = train_step(state, step, current, groups)
            metrics = record_metrics(state, current, mine, grad_norm, lr, time.perf_counter() - started)
            if step == state.first_step + 1 and state.first_step:
                metrics["resumed_from_step"] = float(state.first_step)  # the resume, in the tracker
            tracker.log(metrics, step)
            result.losses[step], result.last_step = metrics["loss"], step
            result.metrics.append(metrics)
            bar.update(1)
            bar.set_postfix(loss=f"{metrics['loss']:.4f}", tok_s=f"{metrics['tokens_per_s']:.0f}")
            stopping = should_stop(state, stop, step)
            if checkpoint_due(state, step, stopping):
                save(state, step, current)
            if stopping:
                result.preempted = True
                mark_preempted(state, step)
                break
    finally:
        bar.close()
        source.close()
        stop.close()
        tracker.finish()
        restore_weights(state.activations.weights)  # the returned model holds its weights on the device
    finish(state, result)
    return result
