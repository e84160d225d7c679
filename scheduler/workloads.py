"""Workloads: document-length samplers, a lengths-file reader, and step packing.

(a) ``web`` — long-tailed web text. A log-normal body (median 350 tokens,
    sigma 1.4) below 8,192 tokens and a Pareto tail (index 1.85, 1.6% of
    documents) from 8,192 up to 1.8M tokens, fitted to the Wikipedia sample in
    DESIGN.md. Measured on 400K draws (seed 0), target in brackets: mean 1,025
    (1,014), median 353 (347), p99 10.4K (10.9K), documents > 8K: 1.57% (1.6%)
    holding 27.3% of tokens (27.5%) and 91% of sum s^2 (87.5%).
(b) ``longmix`` — long-context mix: 0.5% of documents are long, log-uniform in
    64K..1M tokens; the rest are drawn from (a). About 65% of tokens sit in the
    long documents.
(c) a file with one positive integer length per line (`read_lengths_file`, from `cli_inputs`).
(d) long-document steps (`long_document_step`): a few documents of 150K-1M
    tokens plus a web-text tail (a), `tokens_per_rank` tokens per rank in
    total (64K by default), in a random arrival order. Shapes (`LONG_SHAPES`):
    ``one-1m`` one 1,048,576-token document; ``several`` documents
    log-uniform in 300K..800K holding about half the tokens; ``bimodal`` half
    the tokens in documents log-uniform in 150K..1M, half in short documents
    (the web body, below 8K). These are the steps the static DP x CP baseline
    is hardest to beat on (issue 10).

`pack_steps` cuts a stream of documents into steps of exactly
`tokens_per_step` tokens (the step's global token budget), in arrival order:
documents longer than `max_sequence_length` are split into chunks of that
length, and a document crossing the end of a step is split there, its rest
opening the next step (as Megatron-style packing does).
"""
from __future__ import annotations

from typing import Callable, Iterable, Iterator

import numpy as np

from longctx.scheduler.errors import SchedulerInputError
from longctx.scheduler.cli_inputs import read_lengths_file  # noqa: F401 - (c), re-exported here

WEB_MEDIAN = 350.0
WEB_SIGMA = 1.4
TAIL_START = 8192
TAIL_FRACTION = 0.016
TAIL_INDEX = 1.85
MAX_DOCUMENT = 1_800_000
LONG_FRACTION = 0.005
LONG_RANGE = (65_536, 1_048_576)


def web_text_lengths(rng: np.random.Generator, count: int) -> np.ndarray:
    """[count] document lengths (tokens, int64) of workload (a)."""
    tail = rng.random(count) < TAIL_FRACTION
    out = np.empty(count, dtype=np.float64)
    body = np.exp(np.log(WEB_MEDIAN) + WEB_SIGMA * rng.standard_normal(int((~tail).sum())))
    while (redo := body >= TAIL_START).any():  # the body is truncated below the tail's start
        body[redo] = np.exp(np.log(WEB_MEDIAN) + WEB_SIGMA * rng.standard_normal(int(redo.sum())))
    out[~tail] = body
    shrink = (TAIL_START / MAX_DOCUMENT) ** TAIL_INDEX  # truncated Pareto by inverse CDF
    out[tail] = TAIL_START * (1.0 - rng.random(int(tail.sum())) * (1.0 - shrink)) ** (-1.0 / TAIL_INDEX)
    return np.maximum(1, np.rint(out)).astype(np.int64)


def long_mix_lengths(rng: np.random.Generator, count: int) -> np.ndarray:
    """[count] document lengths (tokens, int64) of workload (b)."""
    out = web_text_lengths(rng, count)
    long = rng.random(count) < LONG_FRACTION
    low, high = np.log(LONG_RANGE[0]), np.log(LONG_RANGE[1])
    out[long] = np.rint(np.exp(rng.uniform(low, high, int(long.sum())))).astype(np.int64)
    return out


SAMPLERS: dict[str, Callable[[np.random.Generator, int], np.ndarray]] = {
    "web": web_text_lengths,
    "longmix": long_mix_lengths,
}


LONG_SHAPES = ("one-1m", "several", "bimodal")
#: tokens per rank of a long-document step unless told otherwise
LONG_TOKENS_PER_RANK = 65_536
ONE_LONG = 1_048_576
SEVERAL_RANGE = (300_000, 800_000)
BIMODAL_RANGE = (150_000, 1_048_576)
#: share of a step's tokens in the long documents of shapes "several" and "bimodal"
LONG_SHARE = 0.5


def _log_uniform_until(rng: np.random.Generator, low: int, high: int, budget: int) -> list[int]:
    """Documents log-uniform in [low, high] until they hold about `budget` tokens (at least one)."""
    docs: list[int] = []
    while not docs or sum(docs) < budget:
        doc = int(np.rint(np.exp(rng.uniform(np.log(low), np.log(high)))))
        if docs and sum(docs) + doc > budget * 1.25:  # stop before overshooting the share much
            break
        docs.append(doc)
    return docs


def _short_tail(rng: np.random.Generator, budget: int, longest: int, body_only: bool) -> list[int]:
    """Web-text documents (a) holding exactly `budget` tokens, cut into pieces of at most `longest`
    (only the body below TAIL_START when `body_only`)."""
    stream = (int(x) for _ in iter(int, 1) for x in web_text_lengths(rng, 4096)
              if not body_only or x < TAIL_START)
    return pack_steps(stream, budget, 1, longest)[0] if budget else []


def long_document_step(shape: str, num_ranks: int, seed: int = 0,
                       tokens_per_rank: int = LONG_TOKENS_PER_RANK) -> list[int]:
    """Sequence lengths (tokens) of one long-document step of `shape` for `num_ranks` ranks.

    The lengths sum to exactly ``num_ranks * tokens_per_rank``; long documents are never cut
    (dropped when they would exceed the budget); tail documents longer than `tokens_per_rank` are
    cut into pieces of that length, as packing does; the order is random (arrival order).
    """
    if shape not in LONG_SHAPES:
        raise SchedulerInputError(f"shape={shape!r}: choose one of {list(LONG_SHAPES)}")
    for name, value in (("num_ranks", num_ranks), ("tokens_per_rank", tokens_per_rank)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise SchedulerInputError(f"{name}={value!r}: must be a positive integer")
    rng = np.random.default_rng(seed)
    budget = num_ranks * tokens_per_rank
    if shape == "one-1m":
        long = [ONE_LONG]
    else:
        low, high = SEVERAL_RANGE if shape == "several" else BIMODAL_RANGE
        long = _log_uniform_until(rng, low, high, int(LONG_SHARE * budget))
    long = [min(doc, budget) for doc in long]
    while sum(long) > budget:
        long.pop()
    docs = long + _short_tail(rng, budget - sum(long), tokens_per_rank, body_only=shape == "bimodal")
    return [docs[i] for i in rng.permutation(len(docs)).tolist()]


#: documents drawn per call of a sampler by `document_stream`
STREAM_BATCH = 4096


def document_stream(workload: str, seed: int, batch: int = STREAM_BATCH) -> Iterator[int]:
    """Endless stream of document lengths of a named workload, deterministic in `seed`."""
    if workload not in SAMPLERS:
        raise SchedulerInputError(f"workload={workload!r}: choose one of {sorted(SAMPLERS)} or give a lengths file")
    rng = np.random.default_rng(seed)
    while True:
        yield from (int(x) for x in SAMPLERS[workload](rng, batch))


def pack_steps(documents: Iterable[int], tokens_per_step: int, num_steps: int,
               max_sequence_length: int) -> list[list[int]]:
    """Pack documents in arrival order into `num_steps` steps of `tokens_per_step` tokens each.

    Returns one list of sequence lengths per step; fewer steps if the documents run out
    (the last, partial step is dropped).
    """
    for name, value in (("tokens_per_step", tokens_per_step), ("num_steps", num_steps),
                        ("max_sequence_length", max_sequence_length)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise SchedulerInputError(f"{name}={value!r}: must be a positive integer")
    steps: list[list[int]] = []
    current: list[int] = []
    room = tokens_per_step
    for doc in documents:
        while doc > 0:
            piece = min(doc, max_sequence_length, room)
            current.append(piece)
            doc -= piece
            room -= piece
            if room == 0:
                steps.append(current)
                if len(steps) == num_steps:
                    return steps
                current, room = [], tokens_per_step
    return steps


