"""The run's structured config: one dataclass per Hydra group, validated before any process starts.

Hydra composes `configs/config.yaml` (groups model/ parallel/ memory/ data/ optim/
train/ tracker/ experiment/) on top of the schema `RunConfig` registered in
the ConfigStore as ``longctx_schema``, so a typo'd key or a wrong type fails at
composition. `to_run_config` turns the composed DictConfig into dataclasses,
which runs every `__post_init__` check and then the cross-group checks of
`RunConfig.__post_init__`; each error names the field, the value and the fix.
"""
from __future__ import annotations

import os
import re
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf

from longctx.model.config import ModelConfig


class ConfigError(ValueError):
    """A run setting that cannot work; the message names the field, its value and the fix."""


def _positive_int(where: str, value: Any, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{where}={value!r} must be an integer >= {minimum}")


def _positive_number(where: str, value: Any, allow_zero: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and (value >= 0 if allow_zero else value > 0)
    if not ok:
        raise ConfigError(f"{where}={value!r} must be a number {'>= 0' if allow_zero else '> 0'}")


def _choice(where: str, value: Any, choices: tuple) -> None:
    if value not in choices:
        raise ConfigError(f"{where}={value!r} is not supported; choose one of {list(choices)}")


#: the registry of `longctx.attention.backends` (named here so the config stays torch-free; a test keeps them equal)
ATTENTION_BACKENDS = ("reference", "triton", "sdpa", "flash_attn")


@dataclass
class ParallelConfig:
    """How the ranks are started and how each step's mesh is chosen."""

    #: "dynamic": the scheduler plans every step's mesh; "static": a fixed DP x CP mesh
    mode: str = "dynamic"
    #: local processes `longctx train` spawns when not under torchrun/srun (the world size); under
    #: torchrun the world size is torchrun's and this value only enters config-time checks
    nprocs: int = 4
    #: torch.distributed backend: "auto" (nccl on CUDA, else gloo), "gloo", "nccl"
    backend: str = "auto"
    #: dynamic: "milp" or "greedy" (longctx.scheduler.plan_step's method)
    planner: str = "milp"
    #: dynamic: MILP solver name (longctx.scheduler)
    solver: str = "highs"
    #: dynamic: MILP time limit per step, seconds (planning runs one step ahead)
    time_limit_s: float = 1.0
    #: dynamic: also make megatron-core's BalancedCPScheduler plan of every step and keep it when it is
    #: faster under the cost model (so a plan is never slower than megatron's). Its pure-Python loop takes
    #: seconds at 64 ranks and minutes at 512+: switch it off there (planning runs one step ahead)
    megatron_candidate: bool = True
    #: static: ranks per context-parallel group; must divide the world size
    cp: int = 1
    #: static: attention kind of the CP groups ("ring" or "ulysses")
    static_kind: str = "ring"
    #: static: sequence order onto the DP groups: "arrival" (Megatron-style) or "balanced" (LPT)
    static_order: str = "balanced"
    #: ranks per node for planning; null: the whole world is one node
    ranks_per_node: int | None = None
    #: device memory per rank for planning, GB
    memory_per_rank_gb: float = 80.0
    #: most tokens one rank may hold at once (the planner's memory limit); null: derived from the memory
    #: and the model's activation size. Small values force long sequences onto context-parallel groups.
    max_tokens_per_rank: int | None = None
    #: scheduler cost-model profile file (CostModel.from_profile); null: the default H100 profile
    cost_profile: str | None = None
    #: REMOVED, kept only to point old configs at its replacement: use memory.offload (none|checkpoints|all)
    offload_activations: bool | None = None
    #: local attention kernel: "auto" (on CUDA the fastest present for the compute dtype, else reference)
    #: or one of ATTENTION_BACKENDS by name
    attention_backend: str = "auto"
    #: peak dense FLOP/s per rank in TFLOP/s for MFU (989 = H100 SXM bf16 dense)
    peak_tflops_per_rank: float = 989.0

    def __post_init__(self) -> None:
        _choice("parallel.mode", self.mode, ("dynamic", "static"))
        if isinstance(self.nprocs, bool) or not isinstance(self.nprocs, int) or self.nprocs < 1:
            raise ConfigError(f"parallel.nprocs={self.nprocs!r}: the number of ranks must be an integer >= 1")
        _choice("parallel.backend", self.backend, ("auto", "gloo", "nccl"))
        _choice("parallel.planner", self.planner, ("milp", "greedy"))
        _positive_number("parallel.time_limit_s", self.time_limit_s, allow_zero=True)
        if not isinstance(self.megatron_candidate, bool):
            raise ConfigError(f"parallel.megatron_candidate={self.megatron_candidate!r} must be true or false")
        _positive_int("parallel.cp", self.cp)
        _choice("parallel.static_kind", self.static_kind, ("ring", "ulysses"))
        _choice("parallel.static_order", self.static_order, ("arrival", "balanced"))
        if self.ranks_per_node is not None:
            _positive_int("parallel.ranks_per_node", self.ranks_per_node)
        _positive_number("parallel.memory_per_rank_gb", self.memory_per_rank_gb)
        if self.max_tokens_per_rank is not None:
            _positive_int("parallel.max_tokens_per_rank", self.max_tokens_per_rank)
        if self.cost_profile is not None and not os.path.isfile(self.cost_profile):
            raise ConfigError(f"parallel.cost_profile={self.cost_profile!r} is not a file; give a profile written "
                              "by CostModel.to_profile, or null for the default cost model")
        _positive_number("parallel.peak_tflops_per_rank", self.peak_tflops_per_rank)
        _choice("parallel.attention_backend", self.attention_backend, ("auto", *ATTENTION_BACKENDS))
        if self.offload_activations is not None:
            raise ConfigError(
                f"parallel.offload_activations={self.offload_activations!r} was replaced by the memory group: "
                "use memory.offload=all (every saved activation to host memory), memory.offload=checkpoints "
                "(only layer checkpoints) or memory.offload=none, and drop parallel.offload_activations"
            )

    def check_world(self, world_size: int) -> None:
        """Errors for settings that do not fit a world of `world_size` ranks."""
        if self.mode == "static" and world_size % self.cp:
            raise ConfigError(
                f"parallel.cp={self.cp} does not divide the world size {world_size}; a static mesh has "
                f"world/cp data-parallel groups of cp ranks: pick cp among {_divisors(world_size)}"
            )
        rpn = self.ranks_per_node or world_size
        if world_size % rpn:
            raise ConfigError(f"parallel.ranks_per_node={rpn} does not divide the world size {world_size}")


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


@dataclass
class MemoryConfig:
    """How a rank keeps a step within device memory (applied to every plan the runtime executes).

    Activation side: `longctx.runtime.activation_checkpoint`, `longctx.runtime.offload`,
    `longctx.model.tiled_mlp`, `longctx.model.tiled_loss`. Optimizer side: `optimizer_sharding` and
    `optimizer_offload`. The memory model of all of them: `longctx.scheduler` (`longctx memory`).
    """

    #: what each decoder layer keeps for backward: "none" (every intermediate), "full" (only the layer's
    #: input; the layer is recomputed in backward), "selective" (the layer's input plus the attention
    #: output and its log-sum-exp; everything else is recomputed) or "tiled" (like full, and the layer's
    #: token-wise parts -- norms, projections, RoPE, MLP -- run over tiles of `mlp_tile_tokens` tokens in
    #: forward, recompute and backward: only attention's q/k/v/output and their gradients are whole-shard)
    checkpointing: str = "tiled"
    #: where saved activations live between forward and backward: "none" (device memory), "checkpoints"
    #: (the per-layer checkpoints go to host memory) or "all" (every saved tensor goes to host memory);
    #: copies run on a side stream on CUDA, overlapped with the neighbouring layers' compute
    offload: str = "checkpoints"
    #: most layers whose offloaded tensors may be in flight (copy-out not finished or prefetched early)
    offload_layers_in_flight: int = 2
    #: TiledMLP: run each layer's MLP over tiles of this many tokens (never the whole [tokens, ffn]);
    #: null: the whole shard at once
    mlp_tile_tokens: int | None = 8192
    #: output head + cross-entropy over tiles of this many tokens (never the whole [tokens, vocab]);
    #: null: the whole shard's logits at once
    loss_tile_tokens: int | None = 8192
    #: optimizer state sharding over the whole world: "none", "zero1" (AdamW states) or "zero2"
    #: (AdamW states and gradients)
    optimizer_sharding: str = "none"
    #: fp32 master weights and AdamW states in host memory, stepped on the CPU; the gradients stream into
    #: fp32 host accumulators during backward (`longctx.runtime.grad_stream`), never all on the device
    optimizer_offload: bool = False
    #: device weights in host memory (a copy in the weights' dtype), materialised per module only while
    #: it runs (`longctx.runtime.param_offload`); needs optimizer_offload and checkpointing != none
    param_offload: bool = False

    def __post_init__(self) -> None:
        _choice("memory.checkpointing", self.checkpointing, ("none", "full", "selective", "tiled"))
        _choice("memory.offload", self.offload, ("none", "checkpoints", "all"))
        if self.offload == "checkpoints" and self.checkpointing == "none":
            raise ConfigError(
                "memory.offload='checkpoints' with memory.checkpointing='none': there are no layer checkpoints "
                "to offload; set memory.checkpointing=full or selective, or memory.offload=all"
            )
        _positive_int("memory.offload_layers_in_flight", self.offload_layers_in_flight)
        for name in ("mlp_tile_tokens", "loss_tile_tokens"):
            if getattr(self, name) is not None:
                _positive_int(f"memory.{name}", getattr(self, name))
        if self.checkpointing == "tiled" and self.mlp_tile_tokens is None:
            raise ConfigError("memory.checkpointing='tiled' with memory.mlp_tile_tokens=null: tiled recompute "
                              "runs the token-wise parts over tiles of that size; set memory.mlp_tile_tokens "
                              "(e.g. 8192) or memory.checkpointing=full")
        _choice("memory.optimizer_sharding", self.optimizer_sharding, ("none", "zero1", "zero2"))
        if not isinstance(self.optimizer_offload, bool):
            raise ConfigError(f"memory.optimizer_offload={self.optimizer_offload!r} must be true or false")
        if not isinstance(self.param_offload, bool):
            raise ConfigError(f"memory.param_offload={self.param_offload!r} must be true or false")
        if self.param_offload and not self.optimizer_offload:
            raise ConfigError("memory.param_offload=true with memory.optimizer_offload=false: the offloaded weights "
                              "are refreshed by the host optimizer step; set memory.optimizer_offload=true")
        if self.param_offload and self.checkpointing == "none":
            raise ConfigError("memory.param_offload=true with memory.checkpointing='none': an uncheckpointed block's "
                              "graph reads its weights in backward outside the offload; set memory.checkpointing="
                              "full, selective or tiled")


@dataclass
class SourceConfig:
    """One source of a data mixture (see longctx/data/mixture.py): documents of a dataset, with a token share."""

    #: megatron-core dataset prefix (<path>.bin/.idx); null: the embedded default corpus (data.tokenizer)
    path: str | None = None
    #: share of the training tokens (normalised over data.sources)
    weight: float = 1.0
    #: documents shorter than this many tokens are not drawn
    min_length: int = 1
    #: documents longer than this many tokens are not drawn; null: no limit
    max_length: int | None = None
    #: label in errors and metrics; null: the dataset's name
    name: str | None = None

    def __post_init__(self) -> None:
        where = f"data.sources[{self.name or self.path or 'default corpus'}]"
        _positive_number(f"{where}.weight", self.weight)
        _positive_int(f"{where}.min_length", self.min_length)
        if self.max_length is not None and (not isinstance(self.max_length, int) or self.max_length < self.min_length):
            raise ConfigError(f"{where}.max_length={self.max_length!r} must be an integer >= min_length="
                              f"{self.min_length}, or null for no limit")
        if self.path is not None:
            _check_dataset_prefix(f"{where}.path", self.path)


def _check_dataset_prefix(where: str, prefix: str) -> None:
    missing = [prefix + ext for ext in (".bin", ".idx") if not os.path.isfile(prefix + ext)]
    if missing:
        raise ConfigError(
            f"{where}={prefix!r}: {missing} not found; give the prefix of a dataset written by "
            "`longctx data ingest` (files <prefix>.bin and <prefix>.idx), or null for the default corpus"
        )


@dataclass
class DataConfig:
    """Where the documents come from and how a step is packed."""

    #: megatron-core dataset prefix (<path>.bin/.idx); null: the embedded default corpus
    path: str | None = None
    #: "byte" or a local Hugging Face tokenizer path (used for the default corpus)
    tokenizer: str = "byte"
    #: cache directory of the default corpus; null: ~/.cache/longctx
    cache_dir: str | None = None
    #: token budget of one step, all ranks together
    tokens_per_step: int = 8192
    #: longest sequence of a step; longer documents are split into pieces of this size
    max_doc_tokens: int = 2048
    #: shuffle seed of the sampler
    seed: int = 0
    #: a mixture of sources (ProLong-style long/short mix); empty: one source, data.path. Exclusive with data.path
    sources: list[SourceConfig] = field(default_factory=list)
    #: fraction of every dataset's documents held out for `longctx eval` (never drawn for training)
    heldout_fraction: float = 0.0

    def __post_init__(self) -> None:
        _positive_int("data.tokens_per_step", self.tokens_per_step)
        _positive_int("data.max_doc_tokens", self.max_doc_tokens, minimum=2)
        _positive_int("data.seed", self.seed, minimum=0)
        if self.tokens_per_step < self.max_doc_tokens:
            raise ConfigError(
                f"data.tokens_per_step={self.tokens_per_step} is below data.max_doc_tokens={self.max_doc_tokens}, "
                "the cap on the longest document piece; a step must hold its longest piece: raise "
                f"data.tokens_per_step to >= {self.max_doc_tokens} or lower data.max_doc_tokens"
            )
        if self.path is not None:
            _check_dataset_prefix("data.path", self.path)
        if self.sources and self.path is not None:
            raise ConfigError(f"data.path={self.path!r} and data.sources are both set; a mixture names its datasets "
                              "in data.sources[*].path: set data.path=null")
        if isinstance(self.heldout_fraction, bool) or not isinstance(self.heldout_fraction, (int, float)) \
                or not 0 <= self.heldout_fraction < 1:
            raise ConfigError(f"data.heldout_fraction={self.heldout_fraction!r} must lie in [0, 1)")


@dataclass
class OptimConfig:
    """AdamW with linear warmup and cosine decay, and global-norm gradient clipping."""

    #: peak learning rate
    lr: float = 3e-3
    #: final learning rate as a fraction of `lr` (cosine floor)
    min_lr_ratio: float = 0.1
    #: steps of linear warmup from lr/warmup_steps to lr
    warmup_steps: int = 5
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8
    #: clip the global gradient L2 norm to this value; 0 disables clipping
    grad_clip: float = 1.0

    def __post_init__(self) -> None:
        _positive_number("optim.lr", self.lr)
        if not 0 <= self.min_lr_ratio <= 1:
            raise ConfigError(f"optim.min_lr_ratio={self.min_lr_ratio!r} must lie in [0, 1]")
        _positive_int("optim.warmup_steps", self.warmup_steps, minimum=0)
        _positive_number("optim.weight_decay", self.weight_decay, allow_zero=True)
        for name in ("beta1", "beta2"):
            if not 0 <= getattr(self, name) < 1:
                raise ConfigError(f"optim.{name}={getattr(self, name)!r} must lie in [0, 1)")
        _positive_number("optim.eps", self.eps)
        _positive_number("optim.grad_clip", self.grad_clip, allow_zero=True)


@dataclass
class TrainConfig:
    """The loop: length, seed, outputs, checkpoints, resume."""

    #: total optimizer steps of the run (also the length of the LR schedule)
    steps: int = 40
    #: seed of the model's initial weights
    seed: int = 0
    #: everything the run writes goes here (config.yaml, checkpoints/, metrics, final_metrics.json)
    output_dir: str = "runs/train"
    #: "auto": continue from the latest complete checkpoint in output_dir/checkpoints; "never": start fresh
    resume: str = "auto"
    #: save a checkpoint every this many steps (0: only at a graceful stop and at the end)
    checkpoint_every: int = 20
    #: stop gracefully (checkpoint + PREEMPTED) after this many steps of THIS process's run; null: never
    stop_after_steps: int | None = None
    #: tqdm progress bar on rank 0
    progress: bool = True
    #: train.resume=never into a directory that holds checkpoints: "error" (refuse, the default),
    #: "archive" (move the old run's files into output_dir/archive-<UTC time>/), "overwrite" (delete them)
    on_existing: str = "error"
    #: keep the newest this many checkpoints (older ones are deleted after each save); 0: keep all
    keep_checkpoints: int = 3
    #: compute precision: "bf16" (bf16 matmuls, fp32 master weights, gradients, optimizer states, norms,
    #: RoPE, softmax statistics and loss; see longctx.runtime.precision), "fp32", or "auto" (bf16 on CUDA,
    #: fp32 on CPU, where the distributed-equals-one-process tests are exact)
    precision: str = "auto"

    def __post_init__(self) -> None:
        _positive_int("train.steps", self.steps)
        _positive_int("train.seed", self.seed, minimum=0)
        if not self.output_dir:
            raise ConfigError("train.output_dir is empty; give a directory for the run's outputs")
        _choice("train.resume", self.resume, ("auto", "never"))
        _positive_int("train.checkpoint_every", self.checkpoint_every, minimum=0)
        if self.stop_after_steps is not None:
            _positive_int("train.stop_after_steps", self.stop_after_steps)
        _choice("train.on_existing", self.on_existing, ("error", "archive", "overwrite"))
        _positive_int("train.keep_checkpoints", self.keep_checkpoints, minimum=0)
        _choice("train.precision", self.precision, ("auto", "bf16", "fp32"))


@dataclass
class TrackerConfig:
    """Where per-step metrics go (longctx.tracking)."""

    #: "wandb", "jsonl" or "none"
    kind: str = "jsonl"
    #: wandb only: "offline" (default, no network) or "online"
    mode: str = "offline"
    run_name: str = "longctx"

    def __post_init__(self) -> None:
        _choice("tracker.kind", self.kind, ("wandb", "jsonl", "none"))
        _choice("tracker.mode", self.mode, ("offline", "online"))


@dataclass
class RunConfig:
    """The whole run; the schema of `configs/config.yaml`."""

    model: ModelConfig = field(default_factory=ModelConfig)
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    memory: MemoryConfig = field(default_factory=MemoryConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    tracker: TrackerConfig = field(default_factory=TrackerConfig)

    def __post_init__(self) -> None:
        cap = self.parallel.max_tokens_per_rank
        group = self.parallel.cp if self.parallel.mode == "static" else self.parallel.nprocs
        if cap is not None and self.data.max_doc_tokens > cap * group:
            raise ConfigError(
                f"data.max_doc_tokens={self.data.max_doc_tokens} does not fit a group of {group} ranks "
                f"({'parallel.cp' if self.parallel.mode == 'static' else 'parallel.nprocs'}) of "
                f"parallel.max_tokens_per_rank={cap} tokens; lower data.max_doc_tokens or raise the cap"
            )
        if self.optim.warmup_steps > self.train.steps:
            raise ConfigError(
                f"optim.warmup_steps={self.optim.warmup_steps} exceeds train.steps={self.train.steps}; "
                "lower the warmup or train longer"
            )
        if self.parallel.cost_profile is not None:
            self._check_cost_profile()
        from longctx.runtime.memory_check import check_step_fits

        check_step_fits(self)  # the memory model: the longest sequence fits the ranks' memory

    def _check_cost_profile(self) -> None:
        """ConfigError unless `parallel.cost_profile` reads and (when `longctx profile` wrote it) was
        measured for this model's shape."""
        from longctx.scheduler.cost_profile import CostProfile
        from longctx.scheduler.errors import SchedulerInputError

        path = self.parallel.cost_profile
        try:
            profile = CostProfile.load(path)
        except SchedulerInputError as error:
            raise ConfigError(f"parallel.cost_profile={path!r}: {error}") from None
        model = self.model
        wrong = profile.model_mismatches(num_layers=model.n_layers, num_heads=model.n_heads,
                                         num_kv_heads=model.n_kv_heads, head_dim=model.head_dim)
        if wrong:
            raise ConfigError(
                f"parallel.cost_profile={path!r} was measured for model {profile.provenance.get('model')!r}, "
                f"not this run's model {model.name!r} ({'; '.join(wrong)}); run `longctx profile model={model.name}` "
                "and use its profile")

    def check_tokenizer_vocab(self, vocab_size: int) -> None:
        """Error unless the model's vocabulary covers the tokenizer's `vocab_size` ids."""
        if self.model.vocab_size < vocab_size:
            raise ConfigError(
                f"model.vocab_size={self.model.vocab_size} is below the tokenizer's vocabulary of {vocab_size} "
                f"ids (data.tokenizer={self.data.tokenizer!r}); set model.vocab_size={vocab_size} or more"
            )


SCHEMA_NAME = "longctx_schema"


def register_schema() -> None:
    """Store `RunConfig` in Hydra's ConfigStore as ``longctx_schema`` (idempotent)."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name=SCHEMA_NAME, node=RunConfig)


def to_run_config(config: DictConfig | dict) -> RunConfig:
    """Validated dataclasses from a composed config; raises ConfigError (or ModelConfigError) naming the field."""
    from omegaconf.errors import OmegaConfBaseException

    _reject_unknown_keys(OmegaConf.to_container(OmegaConf.create(config) if isinstance(config, dict) else config),
                         RunConfig, "")
    try:
        structured = OmegaConf.merge(OmegaConf.structured(RunConfig), config)
        return OmegaConf.to_object(structured)
    except OmegaConfBaseException as error:
        cause = error.__cause__
        if isinstance(cause, ValueError):
            raise cause from None
        unset = re.match(r"While dereferencing interpolation '\$\{([\w.]+)\}': Incompatible value 'None'", str(error))
        if unset:
            raise ConfigError(f"{unset.group(1)} is not set, but {getattr(error, 'full_key', 'another key')} refers to "
                              f"it (${{{unset.group(1)}}}): give {unset.group(1)}=... on the command line") from None
        raise ConfigError(f"config does not match the schema: {error}") from None


def _reject_unknown_keys(values: Any, schema: type, prefix: str) -> None:
    """ConfigError for a key the dataclass `schema` lacks (Hydra's `+group.key=...` would slip one in)."""
    if not isinstance(values, dict):
        return
    known = {f.name: f for f in fields(schema)}
    for key, value in values.items():
        if key not in known:
            raise ConfigError(f"{prefix}{key} is not a setting of {schema.__name__}; known: {sorted(known)}")
        if is_dataclass(known[key].default_factory if known[key].default_factory is not MISSING else None):
            _reject_unknown_keys(value, known[key].default_factory, f"{prefix}{key}.")


def run_config_dict(run: RunConfig) -> dict:
    """Plain nested dict of `run` (for config.yaml and the tracker)."""
    return OmegaConf.to_container(OmegaConf.structured(run), resolve=True)
