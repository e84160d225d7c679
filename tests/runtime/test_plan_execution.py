"""A hand-made plan whose waves move ranks between groups of every kind gives the dense reference's gradients.

The reference is `tests.reference.dense_decoder`: the same initial weights in
float64, every document alone through a textbook decoder, no longctx code.
"""
from __future__ import annotations

import torch
import torch.distributed as dist

from longctx.model import Decoder, ModelConfig
from longctx.runtime.grad_sync import all_reduce_gradients
from longctx.runtime.process_groups import ProcessGroupCache
from longctx.runtime.step import micro_batches, run_plan
from longctx.scheduler import Plan
from tests.reference.dense_decoder import DenseShape, float64_weights, step_loss as dense_step_loss

LENGTHS = [37, 64, 5, 120, 33, 80, 9, 50, 1]

#: rank 0: ring {0,1} -> local -> hybrid {0..3} -> ring {0,2}; ranks 1 and 3 idle in the last wave;
#: rank 2: ulysses {2,3} -> ring {1,2,3} (3 ranks) -> hybrid -> ring {0,2}; sequence 8 has one token (no target)
SWITCHING_PLAN = {
    "world_size": 4, "lengths": LENGTHS, "method": "hand-made",
    "waves": [
        {"groups": [{"ranks": [0, 1], "kind": "ring", "ulysses_degree": 1, "sequences": [0, 2]},
                    {"ranks": [2, 3], "kind": "ulysses", "ulysses_degree": 2, "sequences": [1]}]},
        {"groups": [{"ranks": [0], "kind": "local", "ulysses_degree": 1, "sequences": [4, 6, 8]},
                    {"ranks": [1, 2, 3], "kind": "ring", "ulysses_degree": 1, "sequences": [3]}]},
        {"groups": [{"ranks": [0, 1, 2, 3], "kind": "hybrid", "ulysses_degree": 2, "sequences": [5]}]},
        {"groups": [{"ranks": [0, 2], "kind": "ring", "ulysses_degree": 1, "sequences": [7]}]},
    ],
}


def _model_and_sequences() -> tuple[Decoder, list[torch.Tensor]]:
    torch.manual_seed(0)
    model = Decoder(ModelConfig())
    generator = torch.Generator().manual_seed(1)
    return model, [torch.randint(0, 257, (n,), generator=generator) for n in LENGTHS]


def _dense_gradients(model: Decoder, sequences: list[torch.Tensor]) -> tuple[dict[str, torch.Tensor], float]:
    """Float64 gradients and loss of the whole step from the dense reference, at `model`'s weights."""
    weights = float64_weights(model.state_dict())
    loss = dense_step_loss(weights, DenseShape.of(model.config), sequences)
    loss.backward()
    return {name: w.grad for name, w in weights.items()}, float(loss.detach())


def run_switching_plan() -> dict:
    """On every rank: execute SWITCHING_PLAN, all-reduce, compare with the dense reference's whole step."""
    model, sequences = _model_and_sequences()
    plan = Plan.from_dict(SWITCHING_PLAN).validate()
    groups = ProcessGroupCache()
    created = groups.prepare(plan)
    again = groups.prepare(plan)
    mine = run_plan(model, plan, sequences, dist.get_rank(), groups)
    all_reduce_gradients(model.parameters())
    loss = torch.tensor([mine.loss], dtype=torch.float64)
    dist.all_reduce(loss)
    got = {name: p.grad.double() for name, p in model.named_parameters()}
    want, want_loss = _dense_gradients(model, sequences)
    errors = {name: float((got[name] - want[name]).abs().max() / want[name].abs().max()) for name in want}
    return {"created": created, "again": again, "waves": mine.waves, "loss": float(loss), "want_loss": want_loss,
            "errors": errors}


def test_waves_where_ranks_switch_groups_give_the_dense_reference_gradients(gloo_pool):
    results = gloo_pool(4).run(run_switching_plan)
    # the groups (0,1) (0,2) (0,1,2,3) (1,2,3) (2,3) all run on the world: no communicator is created
    assert [r["created"] for r in results] == [0] * 4 and [r["again"] for r in results] == [0] * 4
    assert [r["waves"] for r in results] == [4, 3, 4, 3]  # rank 1 and rank 3 idle in the last wave
    for rank, r in enumerate(results):
        assert abs(r["loss"] - r["want_loss"]) <= 1e-5 * r["want_loss"], (rank, r["loss"], r["want_loss"])
        worst = max(r["errors"].items(), key=lambda item: item[1])
        assert worst[1] <= 1e-5, f"rank {rank}: gradient of {worst[0]} off by {worst[1]:.2e} of its largest entry"


def test_micro_batches_never_exceed_the_groups_longest_sequence():
    lengths = [10, 3, 4, 2, 9, 1]
    assert micro_batches([0, 1, 2, 3, 4, 5], lengths) == [[0], [1, 2, 3], [4, 5]]
    assert micro_batches([1, 3], lengths) == [[1], [3]]
    assert micro_batches([], lengths) == []


def test_process_group_cache_maps_every_multi_rank_group_to_the_world_in_member_order(gloo_pool):
    assert gloo_pool(4).run(world_rank_group, [3, 1]) == [((3, 1), True)] * 4
    assert ProcessGroupCache().get([3]) is None


def world_rank_group(ranks: list[int]) -> tuple[tuple[int, ...], bool]:
    group = ProcessGroupCache().get(ranks)
    return group.ranks, group.process_group is dist.group.WORLD
