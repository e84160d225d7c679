"""Other systems' planners, run for real and converted to longctx Plans (they may import torch).

`megatron_balanced_cp`: megatron-core's `BalancedCPScheduler`. The planner
takes their plans as candidates (`plan_step(..., peer_plans=...)`), so a
longctx plan is never slower than theirs under the cost model.
"""
