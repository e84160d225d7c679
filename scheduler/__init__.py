"""longctx.scheduler: the per-step LP balance planner. Pure Python + PuLP; never imports torch."""
