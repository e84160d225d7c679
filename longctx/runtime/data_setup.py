"""The run's data: `DataConfig` -> the datasets, the mixture's sources, the training sampler.

`data.sources` empty means one source: `data.path`, or the embedded default
corpus when null. A source whose path is null uses the default corpus built
with `data.tokenizer` (built once per cache under a file lock, so every rank
may call this). The held-out documents (`data.heldout_fraction`) are removed
from every source here, and `longctx eval` reads the same split.
"""
from __future__ import annotations

from longctx.data import StepSampler, default_corpus, load_tokenizer
from longctx.data.mixture import ConcatenatedDataset, MixtureSource, SourceSpec, open_mixture
from longctx.runtime.config import RunConfig


def source_specs(run: RunConfig) -> list[SourceSpec]:
    """The run's sources with every dataset prefix resolved (building the default corpus if a source needs it)."""
    data = run.data
    configured = data.sources or [None]
    specs = []
    for source in configured:
        path = data.path if source is None else source.path
        if path is None:
            tokenizer = load_tokenizer(data.tokenizer, cache_dir=data.cache_dir)
            run.check_tokenizer_vocab(tokenizer.vocab_size)
            path = default_corpus(data.cache_dir, tokenizer)
        if source is None:
            specs.append(SourceSpec(path))
        else:
            specs.append(SourceSpec(path, source.weight, source.min_length, source.max_length, source.name))
    return specs


def open_run_data(run: RunConfig) -> tuple[ConcatenatedDataset, list[MixtureSource]]:
    """The run's documents (all datasets, globally numbered) and its training sources (held-out removed)."""
    return open_mixture(source_specs(run), run.data.heldout_fraction)


def training_sampler(run: RunConfig) -> StepSampler:
    """The sampler of `run`'s training steps (deterministic in `data.seed`, resumable)."""
    dataset, sources = open_run_data(run)
    return StepSampler(dataset, run.data.tokens_per_step, run.data.max_doc_tokens, run.data.seed, sources)
