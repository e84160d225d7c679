"""longctx.benchmarks: throughput benchmark suites; results go to benchmarks/results/."""
