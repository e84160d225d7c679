"""longctx.scheduler: the per-step LP balance planner. Pure Python + PuLP; never imports torch.

Public API (the contract with the runtime)::

    from longctx.scheduler import Cluster, CostModel, Plan, PlanGroup, PlanWave, plan_step, static_plan

Modules, one job each:

- `cluster`      Cluster: ranks, nodes, memory, bandwidths (YAML/JSON loadable)
- `cost_model`   CostModel and GroupShape: time (ms) and memory of a sequence on a group
- `options`      option tables: every sequence's time/work on every candidate shape
- `plan`         Plan / PlanWave / PlanGroup, validate(), JSON
- `lower_bound`  a relaxation no plan can beat; input checks on lengths
- `greedy`       shape choice per target time + list scheduling into waves
- `milp`         compact PuLP model choosing shapes per length bucket (HiGHS / CBC)
- `moldable`     whole-node jobs that pick their node count as they are placed
- `longdoc`      column MILP: long documents' node counts jointly with the tail's room
- `budget`       the wall-clock budget of one plan_step, preparation included
- `quick`        the planner's first plan: the greedy's best-estimated candidate, scheduled fast
- `lpt`          longest-first assignment to machines, exact then in rounds (static and quick plans)
- `step_lengths` a step's lengths sorted once: distinct values, longest-first orders
- `planner`      plan_step: static + peer plans, greedy, MILPs, moldable; keeps the fastest
- `simulator`    times any plan under the cost model
- `static`       static DP x CP plans (arrival / balanced), best over CP sizes
- `baselines`    FlexSP-style and ByteScale-style re-implementations
- `workloads`    length samplers (web long-tail, long-context mix), long-document steps, lengths files, packing
- `cli`          `longctx plan`
"""
from longctx.scheduler.baselines import bytescale_plan, flexsp_plan
from longctx.scheduler.cluster import Cluster
from longctx.scheduler.cost_model import CostModel, GroupShape
from longctx.scheduler.errors import SchedulerInputError
from longctx.scheduler.lower_bound import lower_bound_ms
from longctx.scheduler.plan import Plan, PlanGroup, PlanInvalidError, PlanWave
from longctx.scheduler.planner import plan_step
from longctx.scheduler.simulator import simulate
from longctx.scheduler.static import best_static_plan, static_plan

__all__ = [
    "Cluster", "CostModel", "GroupShape", "Plan", "PlanGroup", "PlanWave", "PlanInvalidError",
    "SchedulerInputError", "best_static_plan", "bytescale_plan", "flexsp_plan", "lower_bound_ms",
    "plan_step", "simulate", "static_plan",
]
