"""The lower bound stays below every plan when a measured shape does less total work than one rank."""
from __future__ import annotations

import numpy as np

from longctx.scheduler import Cluster, CostModel, best_static_plan, lower_bound_ms, plan_step
from tests.reference.step_time import independent_step_time_ms

#: 4 ranks of Ulysses do a sequence in 1/16 of the local linear time: 4 x 1/16 = 1/4 of the local rank-ms
MEASURED = CostModel(measured_shapes={"ulysses:4:4": [0.0, 0.184 / 16, 0.0]})


def test_bound_is_below_plans_that_use_a_cheaper_than_local_measured_shape():
    cluster = Cluster(8, ranks_per_node=8)
    lengths = np.random.default_rng(0).integers(100, 4000, size=64).tolist()
    bound = lower_bound_ms(lengths, cluster, MEASURED)
    for plan in (plan_step(lengths, cluster, cost_model=MEASURED, time_limit_s=None),
                 best_static_plan(lengths, cluster, order="balanced", cost_model=MEASURED)):
        assert bound <= independent_step_time_ms(plan, cluster, MEASURED) * (1 + 1e-9), (bound, plan.method)
    # every sequence on the measured shape, two groups of 4 side by side, is a plan of this time:
    work = sum(4 * 0.184 / 16 * s for s in lengths)
    assert bound <= work / 8 * (1 + 1e-9) + 1e-9
