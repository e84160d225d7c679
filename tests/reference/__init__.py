"""Independent references for the tests: dense float64 computations that share no code with longctx's paths."""
