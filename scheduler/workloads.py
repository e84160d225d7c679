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
(c) a file with one positive integer length per line (`read_lengths_file`).

`pack_steps` cuts a stream of documents into steps of exactly
`tokens_per_step` tokens (the step's global token budget), in arrival order:
documents longer than `max_sequence_length` are split into chunks of that
length, and a document crossing the end of a step is split there, its rest
opening the next step (as Megatron-style packing does).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from longctx.scheduler.errors import SchedulerInputError

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


def document_stream(workload: str, seed: int, batch: int = 4096) -> Iterator[int]:
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


def read_lengths_file(path: str | Path) -> list[int]:
    """Lengths from a text file, one positive integer per line (blank lines and # comments skipped)."""
    path = Path(path)
    if not path.is_file():
        raise SchedulerInputError(f"lengths file {str(path)!r} does not exist")
    lengths = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        try:
            value = int(text)
        except ValueError:
            raise SchedulerInputError(
                f"lengths file {str(path)!r} line {number}: {text!r} is not an integer; write one token count per line"
            ) from None
        if value <= 0:
            raise SchedulerInputError(
                f"lengths file {str(path)!r} line {number}: length {value} must be a positive number of tokens"
            )
        lengths.append(value)
    if not lengths:
        raise SchedulerInputError(f"lengths file {str(path)!r} holds no lengths")
    return lengths
