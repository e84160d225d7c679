"""The runtime tests' small dataset, reused by the profiling tests."""
from tests.runtime.conftest import tiny_dataset  # noqa: F401 - a fixture, re-exported
