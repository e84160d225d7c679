"""The gloo pool itself: results come back per rank, failures carry the rank's traceback."""
import pytest

from longctx.testing import RemoteError


def _all_reduce_rank() -> tuple[int, float]:
    import torch
    import torch.distributed as dist

    t = torch.tensor([float(dist.get_rank())])
    dist.all_reduce(t)
    return dist.get_rank(), t.item()


def _fail_on_rank_one() -> int:
    import torch.distributed as dist

    if dist.get_rank() == 1:
        raise ValueError("boom on rank one")
    return dist.get_rank()


def test_pool_runs_collective_and_returns_by_rank(gloo_pool):
    pool = gloo_pool(3)
    assert pool.run(_all_reduce_rank) == [(0, 3.0), (1, 3.0), (2, 3.0)]


def test_pool_reports_remote_traceback(gloo_pool):
    pool = gloo_pool(2)
    with pytest.raises(RemoteError, match="boom on rank one"):
        pool.run(_fail_on_rank_one)
    # a failure without a pending collective leaves the pool usable
    assert pool.run(_all_reduce_rank) == [(0, 1.0), (1, 1.0)]
