"""Longest-processing-time-first (LPT) assignment of jobs to machines, in rounds after the first ones.

`lpt_rounds(free, durations)`: jobs sorted longest first. The first
`EXACT_PER_MACHINE * machines` go one at a time to the machine that frees up
first (exact LPT with a heap, `greedy.assign_local`). The rest go in rounds: a
round takes the machines that free up within the round's longest job of the
earliest one (the only ones LPT could pick next; a machine busy with a long
sequence is left out until the others catch up), and its next jobs, longest
first, go to them in the order of their free times (earliest first, ties to the
lower index). Each machine ends at most one round's longest job (by then one of
the shortest) above where exact LPT would put it, while the cost is one numpy
sort of the machines per round instead of a heap operation per job (1.6M
sequences on 100,000 ranks: about 0.1 s). Deterministic.
"""
from __future__ import annotations

import numpy as np

from longctx.scheduler.greedy import assign_local

#: jobs per machine placed by exact LPT before the rounds begin
EXACT_PER_MACHINE = 2


def lpt_rounds(free: np.ndarray, durations: np.ndarray) -> np.ndarray:
    """Owner machine of each job (`[jobs]` int64); `durations` [jobs] ms sorted longest first.

    `free` [machines] ms: when each machine frees up; updated in place to its new finish time.
    """
    exact = min(len(durations), EXACT_PER_MACHINE * len(free))
    owner = np.empty(len(durations), dtype=np.int64)
    owner[:exact] = assign_local(free, np.arange(exact), durations[:exact])
    begin = exact
    while begin < len(durations):
        order = np.argsort(free, kind="stable")
        ready = int(np.searchsorted(free[order], free[order[0]] + durations[begin], side="right"))
        batch = durations[begin:begin + ready]
        chosen = order[:len(batch)]
        owner[begin:begin + len(batch)] = chosen
        free[chosen] += batch
        begin += len(batch)
    return owner
