"""longctx.profiling: measure the scheduler's cost-model constants on the machine (`longctx profile`).

Modules, one job each:

- `fit`          non-negative least squares on relative error (quadratic in tokens, latency + bytes/bandwidth)
- `compute`      forward+backward time per group shape, every rank busy, fitted per shape
- `links`        P2P and all-to-all latency and bandwidth
- `overhead`     per-step time outside the waves, from real training steps
- `collectives`  scalars agreed by every rank
- `provenance`   command, commit, versions, machine
- `profile`      measure_profile: all of the above -> a `longctx.scheduler.cost_profile.CostProfile`
- `cli`          `longctx profile`

The profile format and its loading live in `longctx.scheduler.cost_profile` (no torch).
"""
