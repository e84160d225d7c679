"""Shared fixtures: one gloo pool per world size for the whole session."""
from __future__ import annotations

import pytest

from longctx.testing import GlooPool

_pools: dict[int, GlooPool] = {}


@pytest.fixture(scope="session")
def gloo_pool():
    """Return a function ``get(world_size) -> GlooPool``; pools are started lazily and reused."""

    def get(world_size: int) -> GlooPool:
        pool = _pools.get(world_size)
        if pool is None or pool.broken:
            pool = _pools[world_size] = GlooPool(world_size)
        return pool

    yield get
    for pool in _pools.values():
        pool.close()
    _pools.clear()
