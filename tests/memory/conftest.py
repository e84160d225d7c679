"""The memory tests run many tiny steps: one intra-op thread is faster than oversubscribed threads on 2 cores."""
from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
