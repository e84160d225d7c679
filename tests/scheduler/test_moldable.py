"""Moldable placement of whole-node jobs: node counts, filling up to the target, plans it makes."""
import numpy as np
import pytest

from longctx.scheduler import Cluster, CostModel, lower_bound_ms, plan_step
from longctx.scheduler.cost_model import GroupShape
from longctx.scheduler.moldable import DENSE_NODES, node_counts, place_moldable
from longctx.scheduler.workloads import document_stream, pack_steps
from tests.reference.step_time import independent_step_time_ms

MODEL = CostModel()


def test_node_counts_are_dense_then_geometric_up_to_the_cluster():
    assert node_counts(5).tolist() == [1, 2, 3, 4, 5]
    counts = node_counts(2048)
    assert counts[:DENSE_NODES].tolist() == list(range(1, DENSE_NODES + 1))
    assert counts[-1] == 2048 and (np.diff(counts) > 0).all()
    assert len(counts) < 150


def _linear_jobs(work_ms: float, jobs: int, counts: np.ndarray):
    """Jobs of perfectly linear speedup: time on k nodes = work / k."""
    times = np.repeat((work_ms / counts)[:, None], jobs, axis=1)
    shapes = [[GroupShape.make(int(k) * 8, "ring")] * jobs for k in counts]
    return times, shapes


def test_linear_jobs_stretch_to_fill_the_nodes_up_to_the_target():
    cluster = Cluster(64)  # 8 nodes
    counts = node_counts(cluster.num_nodes)
    times, shapes = _linear_jobs(1000.0, 4, counts)
    grid = np.zeros((8, 8))
    placed = place_moldable(np.arange(4), times, shapes, counts, 500.0, cluster, grid)
    assert [len(p.ranks) for p in placed] == [16, 16, 16, 16]  # 4 x 1000 node-ms on 8 nodes: 500 ms each
    assert sorted(r for p in placed for r in p.ranks) == list(range(64))
    assert np.allclose(grid, 500.0)


def test_a_job_that_cannot_meet_the_target_takes_the_earliest_end():
    cluster = Cluster(32)  # 4 nodes
    counts = node_counts(cluster.num_nodes)
    times, shapes = _linear_jobs(1000.0, 1, counts)
    grid = np.zeros((4, 8))
    grid[0] = 100.0  # node 0 busy until 100 ms
    placed = place_moldable(np.arange(1), times, shapes, counts, 200.0, cluster, grid)
    # ends: 1 node 1000, 2 nodes 500, 3 nodes 333, 4 nodes 100 + 250 = 350
    assert placed[0].ranks == list(range(8, 32)) and placed[0].start_ms == 0.0
    assert np.allclose(grid[1:], 1000.0 / 3) and np.allclose(grid[0], 100.0)


def test_longmix_plan_with_moldable_groups_is_valid_deterministic_and_timed_like_the_independent_evaluation():
    cluster = Cluster(512)
    budget = 16384 * 512
    lengths = pack_steps(document_stream("longmix", 0), budget, 1,
                         min(budget, MODEL.max_tokens_per_rank(cluster) * 512))[0]
    plan = plan_step(lengths, cluster, method="greedy", time_limit_s=None)  # deterministic
    assert any("moldable" in note for note in plan.notes), plan.notes
    plan.validate(MODEL.max_tokens_per_rank(cluster), cluster.ranks_per_node)
    evaluated = independent_step_time_ms(plan, cluster, MODEL)
    assert plan.predicted_step_time_ms == pytest.approx(evaluated, rel=1e-9)
    assert lower_bound_ms(lengths, cluster, MODEL) <= evaluated
    again = plan_step(lengths, cluster, method="greedy", time_limit_s=None)
    assert again.waves == plan.waves
