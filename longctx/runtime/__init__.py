"""Training runtime: execute a new data x context-parallel Plan every step, end to end.

Modules, in the order a step touches them: `plan_source` (rank 0 plans step
t+1 in a thread, broadcasts it), `process_groups` (groups cached by rank
tuple, created collectively), `step` (waves -> forward/backward on each
rank's zigzag shard), `grad_sync` (one world all-reduce, clipping), `optim`
(AdamW, warmup + cosine), `checkpoint` (DCP, atomic rename), `stop`
(graceful stop), `metrics`, `trainer` (the loop), `world` and `train_cli`
(`longctx train`). Configs: `config`.
"""
