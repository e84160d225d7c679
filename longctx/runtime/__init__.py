"""Training runtime: execute a new data x context-parallel Plan every step, end to end.

Modules, in the order a step touches them: `step_source` (rank 0 plans step
t+1 in a thread and broadcasts the plan and the step's piece ids; every rank
reads its own tokens), `process_groups` (every group runs on the world, no
communicator is created), `step` (waves -> forward/backward on each rank's
zigzag shard, under `precision`), `grad_sync` (one world all-reduce,
clipping), `optim` (AdamW, warmup + cosine), `checkpoint` (DCP, atomic
rename), `stop` (graceful stop), `metrics`, `trainer` (the loop), `world` and
`train_cli` (`longctx train`). `comm_device` decides where every
communicated tensor lives. Configs: `config`.
"""
