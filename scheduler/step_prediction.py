"""Predict a training step's wall time from its plan, on a machine whose load changes (torch-free).

``predicted = plan time * load scale + step_overhead_ms`` (ms). The plan time
is the cost model's (`simulate`); the step overhead is the profiled time
outside the waves. The load scale is 1 on a machine the job has to itself
(and wherever the profile measured no core shares, e.g. on GPUs). On a CPU box
shared with other jobs it is the step before's ``expected / measured`` core
share: what share of a core its busy ranks got (CPU s per wall s) against what
the profile's shapes got, weighted by that plan's busy rank-time. The waves'
CPU seconds do not change with the load, their wall time does, by that ratio.
"""
from __future__ import annotations

from dataclasses import dataclass

from longctx.scheduler.cluster import Cluster
from longctx.scheduler.cost_model import CostModel, load_scale, shape_key
from longctx.scheduler.plan import Plan
from longctx.scheduler.simulator import group_times_ms


def expected_core_share(plan: Plan, cluster: Cluster, cost_model: CostModel) -> float:
    """The profile's core shares of `plan`'s shapes weighted by each group's busy rank-ms (time x ranks);
    groups of shapes without a profiled share are left out; 0 when none has one."""
    weighted = total = 0.0
    for (_, group), ms in zip(plan.groups(), group_times_ms(plan, cluster, cost_model)):
        share = cost_model.core_shares.get(shape_key(group.shape))
        if share is not None:
            weighted += share * ms * len(group.ranks)
            total += ms * len(group.ranks)
    return weighted / total if total > 0 else 0.0


@dataclass
class StepTimePredictor:
    """The trainer's ``predicted_step_ms``: `load_scale` is the scale for the next step, set by `observe`."""

    cluster: Cluster
    cost_model: CostModel
    #: factor on the next step's plan time; 1 until a step has been observed
    load_scale: float = 1.0

    def observe(self, plan: Plan, measured_core_share: float) -> float:
        """Set the load scale from a finished step: its plan and its measured core share (CPU s per wall s
        of its busy ranks, the ``core_share`` step metric). Returns the plan's expected core share."""
        expected = expected_core_share(plan, self.cluster, self.cost_model)
        self.load_scale = load_scale(expected, measured_core_share)
        return expected
