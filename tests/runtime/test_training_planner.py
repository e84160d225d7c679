"""The trainer's planner keeps megatron-core's and the static plan as candidates and is never slower than either."""
from __future__ import annotations

import random

from longctx.peers.megatron_balanced_cp import megatron_balanced_cp_plan
from longctx.runtime.step_source import make_planner, planning_setup
from longctx.runtime.train_cli import compose_run_config
from longctx.scheduler import best_static_plan
from tests.reference.step_time import independent_step_time_ms


def _step(seed: int) -> list[int]:
    rng = random.Random(seed)
    return [rng.choice([1, 30, 100, 500, 900, 1024, 700, 2048]) for _ in range(24)]


def test_planned_steps_are_never_slower_than_megatron_or_static():
    run = compose_run_config(["parallel.nprocs=4"])
    cluster, cost_model = planning_setup(run.parallel, run.model, 4, run.memory, "fp32")
    planner = make_planner(run.parallel, run.model, 4, run.memory, "fp32")
    for seed in range(3):
        lengths = _step(seed)
        plan = planner(lengths)
        assert any("megatron-balanced-cp" in note for note in plan.notes), plan.notes
        mine = independent_step_time_ms(plan, cluster, cost_model)
        megatron = independent_step_time_ms(megatron_balanced_cp_plan(lengths, cluster, cost_model), cluster,
                                            cost_model)
        static = independent_step_time_ms(best_static_plan(lengths, cluster, order="balanced", cost_model=cost_model), cluster,
                                          cost_model)
        assert mine <= min(megatron, static) * (1 + 1e-9), (seed, mine, megatron, static, plan.notes)


def test_megatron_candidate_can_be_switched_off():
    run = compose_run_config(["parallel.nprocs=4", "parallel.megatron_candidate=false"])
    plan = make_planner(run.parallel, run.model, 4, run.memory, "fp32")(_step(0))
    assert not any("megatron" in note for note in plan.notes), plan.notes
