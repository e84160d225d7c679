"""Fixture for the Triton kernel tests: where (and how) a test case runs.

On CUDA the cases run in this process on compiled kernels. On CPU they run
under Triton's interpreter, which Triton fixes when ``triton`` is first
imported (its own ``tl.sum``/``tl.max`` are decorated then). Other tests in the
session may already have imported triton normally, so CPU cases run in one
spawned worker process whose environment sets ``TRITON_INTERPRET=1`` before
anything imports triton. A case is a module-level function ``case(device, *args)``.
"""
from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from typing import Callable

import pytest
import torch


def _enable_triton_interpreter() -> None:
    os.environ["TRITON_INTERPRET"] = "1"
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def run_triton_case():
    """Return ``run(case, *args)``: calls ``case(device, *args)`` where the kernels can run."""
    import triton  # noqa: F401  (a [test] dependency: missing means a broken install, which must fail)
    if torch.cuda.is_available():
        yield lambda case, *args: case(torch.device("cuda"), *args)
        return
    worker = ProcessPoolExecutor(
        max_workers=1, mp_context=multiprocessing.get_context("spawn"), initializer=_enable_triton_interpreter
    )

    def run(case: Callable, *args):
        return worker.submit(case, "cpu", *args).result(timeout=300)

    yield run
    worker.shutdown(wait=True, cancel_futures=True)
