"""`gc_paused()`: Python's cyclic garbage collector off for a block, as it was after it.

A plan of 100,000 ranks is hundreds of thousands of small lists and groups
made in a few hundred milliseconds; each allocation burst triggers collection
passes that walk every live object, which cost more than building the plan
(0.7 s of 2.5 s at 100,000 ranks and 1.6M sequences). The planner's objects
hold no reference cycles, so reference counting frees them all the same;
the collector is back on (when it was on) as soon as the block ends.
"""
from __future__ import annotations

import gc
from contextlib import contextmanager
from typing import Iterator


@contextmanager
def gc_paused() -> Iterator[None]:
    """Disable the cyclic collector inside the block; restore its previous state after, errors included."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
