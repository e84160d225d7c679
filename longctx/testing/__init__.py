"""Utilities for testing and benchmarking distributed code on CPU processes."""
from longctx.testing.gloo_pool import GlooPool, RemoteError

__all__ = ["GlooPool", "RemoteError"]
