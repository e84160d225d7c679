"""4 gloo ranks and 1 process train like the dense float64 reference; dynamic plans, a static mesh, stop + resume.

The reference (`tests.reference.dense_decoder`) shares no code with the
trainer: it draws the same steps from the data sampler, starts from the same
initial weights and trains a textbook decoder with its own AdamW in float64.
"""
from __future__ import annotations

import pytest
import torch
import torch.distributed as dist

from longctx.data import DocumentDataset, StepSampler
from longctx.model import Decoder
from longctx.runtime.trainer import train
from tests.reference.dense_decoder import DenseOptim, DenseShape, float64_weights, train_losses
from tests.runtime.conftest import tiny_run

pytestmark = pytest.mark.timeout(600)


def train_on_rank(run) -> dict:
    """Run `train(run)` on this rank; return its losses, parameters and what it planned."""
    result = train(run)
    return {
        "losses": result.losses,
        "preempted": result.preempted,
        "params": {k: v.detach().clone() for k, v in result.model.state_dict().items()},
        "waves": [m["plan_waves"] for m in result.metrics],
        "rank": dist.get_rank(),
    }


def _assert_same_training(got: list[dict], want: dict, steps) -> None:
    """Losses within 1e-5 relative; every rank's parameters within 1e-5 (weights are ~0.02 in size)."""
    for step in steps:
        g, w = got[0]["losses"][step], want["losses"][step]
        assert abs(g - w) <= 1e-5 * abs(w), f"step {step}: loss {g!r} on 4 ranks vs {w!r} in 1 process"
    for rank_result in got:
        for name, value in want["params"].items():
            torch.testing.assert_close(rank_result["params"][name], value, rtol=1e-5, atol=1e-5,
                                       msg=lambda m: f"rank {rank_result['rank']} parameter {name}: {m}")


def dense_reference_losses(run) -> dict[int, float]:
    """{step: loss} of the dense float64 reference trained on `run`'s data, weights and optimizer settings."""
    sampler = StepSampler(DocumentDataset(run.data.path), run.data.tokens_per_step, run.data.max_doc_tokens,
                          run.data.seed)
    steps = [[torch.as_tensor(d, dtype=torch.int64) for d in sampler.next_step()] for _ in range(run.train.steps)]
    torch.manual_seed(run.train.seed)
    weights = float64_weights(Decoder(run.model).state_dict())
    losses = train_losses(weights, DenseShape.of(run.model), DenseOptim.of(run.optim), steps, run.train.steps)
    return {step: loss for step, loss in enumerate(losses, start=1)}


@pytest.fixture(scope="module")
def dense_losses(tiny_dataset, tmp_path_factory) -> dict[int, float]:
    return dense_reference_losses(tiny_run(tiny_dataset, tmp_path_factory.mktemp("dense")))


def _assert_losses_match_dense(losses: dict[int, float], dense: dict[int, float], who: str) -> None:
    for step, want in dense.items():
        got = losses[step]
        assert abs(got - want) <= 1e-5 * abs(want), f"{who}, step {step}: loss {got!r} vs dense float64 {want!r}"


@pytest.fixture(scope="module")
def one_process(gloo_pool, tiny_dataset, tmp_path_factory) -> dict:
    run = tiny_run(tiny_dataset, tmp_path_factory.mktemp("one"), "parallel.nprocs=1", "parallel.max_tokens_per_rank=null")
    return gloo_pool(1).run(train_on_rank, run)[0]


@pytest.fixture(scope="module")
def dynamic_four(gloo_pool, tiny_dataset, tmp_path_factory) -> list[dict]:
    run = tiny_run(tiny_dataset, tmp_path_factory.mktemp("dynamic"), "parallel=dynamic", "parallel.planner=milp")
    return gloo_pool(4).run(train_on_rank, run)


def test_one_process_and_dynamic_4_ranks_train_like_the_dense_float64_reference(one_process, dynamic_four,
                                                                                dense_losses):
    _assert_losses_match_dense(one_process["losses"], dense_losses, "1 process")
    for r in dynamic_four:
        _assert_losses_match_dense(r["losses"], dense_losses, f"dynamic plans, rank {r['rank']}")


def test_the_dense_comparison_can_fail(dense_losses):
    """A loss off by 1e-4 relative, or a step missing, fails the comparison."""
    off = {step: loss * (1 + 1e-4) for step, loss in dense_losses.items()}
    with pytest.raises(AssertionError, match="vs dense float64"):
        _assert_losses_match_dense(off, dense_losses, "perturbed")
    with pytest.raises(KeyError):
        _assert_losses_match_dense({1: dense_losses[1]}, dense_losses, "truncated")


def test_dynamic_plans_on_4_ranks_match_one_process(dynamic_four, one_process):
    assert sorted(dynamic_four[0]["losses"]) == [1, 2, 3, 4]
    _assert_same_training(dynamic_four, one_process, steps=[1, 2, 3, 4])


def test_static_mesh_on_4_ranks_matches_one_process(gloo_pool, tiny_dataset, tmp_path, one_process):
    run = tiny_run(tiny_dataset, tmp_path, "parallel=static", "parallel.cp=2", "parallel.static_kind=ulysses",
                   "parallel.max_tokens_per_rank=null")
    _assert_same_training(gloo_pool(4).run(train_on_rank, run), one_process, steps=[1, 2, 3, 4])


def test_stop_file_then_resume_continues_like_the_uninterrupted_run(gloo_pool, tiny_dataset, tmp_path, dynamic_four):
    run = tiny_run(tiny_dataset, tmp_path, "parallel=dynamic", "parallel.planner=milp")
    (tmp_path / "STOP").touch()
    stopped = gloo_pool(4).run(train_on_rank, run)
    assert [r["preempted"] for r in stopped] == [True] * 4
    assert (tmp_path / "PREEMPTED").read_text().strip() == "1"
    assert (tmp_path / "checkpoints" / "step_1" / ".metadata").is_file()
    (tmp_path / "STOP").unlink()
    resumed = gloo_pool(4).run(train_on_rank, run)
    assert sorted(resumed[0]["losses"]) == [2, 3, 4], resumed[0]["losses"]
    assert not (tmp_path / "PREEMPTED").exists()
    _assert_same_training(resumed, dynamic_four[0], steps=[2, 3, 4])
