"""`sample_steps`: steps of a named workload, packed in numpy; the same lists as `pack_steps(document_stream(...))`.

`workloads.pack_steps` walks the stream one document at a time in Python
(about 2 s for the 1.6M sequences of a 100,000-rank step). Here the documents
are drawn in the same batches from the same generator (so the same lengths),
and each step is cut at once: the step's documents (the rest of the one cut by
the previous step first) are split into pieces of at most
`max_sequence_length`, their running sum finds where the step's budget runs
out, the piece crossing it is shortened to fit, and what its document has left
opens the next step, split again from its start, as `pack_steps` does.
"""
from __future__ import annotations

import numpy as np

from longctx.scheduler.errors import SchedulerInputError
from longctx.scheduler.workloads import SAMPLERS, STREAM_BATCH


def sample_steps(workload: str, seed: int, tokens_per_step: int, num_steps: int,
                 max_sequence_length: int) -> list[list[int]]:
    """`num_steps` steps of `tokens_per_step` tokens of `workload` (seed `seed`), pieces of at most
    `max_sequence_length` tokens: `pack_steps(document_stream(workload, seed), tokens_per_step, num_steps,
    max_sequence_length)`."""
    if workload not in SAMPLERS:
        raise SchedulerInputError(f"workload={workload!r}: choose one of {sorted(SAMPLERS)} or give a lengths file")
    for name, value in (("tokens_per_step", tokens_per_step), ("num_steps", num_steps),
                        ("max_sequence_length", max_sequence_length)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise SchedulerInputError(f"{name}={value!r}: must be a positive integer")
    rng = np.random.default_rng(seed)
    documents = np.empty(0, dtype=np.int64)  # drawn, not yet packed; the first may be a cut document's rest
    steps = []
    for _ in range(num_steps):
        batches, drawn = [documents], int(documents.sum())
        while drawn < tokens_per_step:
            batches.append(SAMPLERS[workload](rng, STREAM_BATCH))
            drawn += int(batches[-1].sum())
        documents = np.concatenate(batches)
        pieces, owner = _pieces(documents, max_sequence_length)
        ends = np.cumsum(pieces)
        last = int(np.searchsorted(ends, tokens_per_step))  # the piece where the budget runs out
        step = pieces[:last + 1]
        step[-1] -= ends[last] - tokens_per_step
        steps.append(step.tolist())
        cut = int(owner[last])
        left = int(documents[:cut + 1].sum()) - tokens_per_step  # what the cut document has not placed
        documents = np.concatenate([[left], documents[cut + 1:]]) if left else documents[cut + 1:]
    return steps


def _pieces(documents: np.ndarray, longest: int) -> tuple[np.ndarray, np.ndarray]:
    """(pieces [pieces] tokens, owner [pieces] document index): each document cut into pieces of `longest`
    tokens and its remainder, in order."""
    full, remainder = np.divmod(documents, longest)
    counts = full + (remainder > 0)
    owner = np.repeat(np.arange(len(documents)), counts)
    pieces = np.full(len(owner), longest, dtype=np.int64)
    last_of = np.cumsum(counts) - 1
    has_remainder = remainder > 0
    pieces[last_of[has_remainder]] = remainder[has_remainder]
    return pieces, owner
