"""Peak device memory allocated inside a region, measured: CUDA allocator statistics, or on CPU the profiler.

`with PeakAllocated(device) as peak: ...` then ``peak.bytes``: the most bytes
allocated at once inside the region above what was allocated when it began.
On CUDA: ``max_memory_allocated`` minus ``memory_allocated`` at entry. On CPU
(no allocator statistics): `torch.profiler` with ``profile_memory=True``
records every allocation and free of the CPU allocator inside the region; their
running sum's maximum is the peak. The CPU measurement is slow (tiny shapes).
"""
from __future__ import annotations

from types import TracebackType

import torch
from torch.profiler import ProfilerActivity, profile


class PeakAllocated:
    """Context manager measuring the peak bytes allocated on `device` inside it (``.bytes`` after exit)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.bytes = 0
        self._profiler: profile | None = None
        self._base = 0

    def __enter__(self) -> PeakAllocated:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            self._profiler = profile(activities=[ProfilerActivity.CPU], profile_memory=True)
            self._profiler.__enter__()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.bytes = torch.cuda.max_memory_allocated(self.device) - self._base
            return
        self._profiler.__exit__(kind, error, trace)
        events = self._profiler.profiler.kineto_results.events()
        live = peak = 0
        for _, nbytes in sorted((e.start_ns(), e.nbytes()) for e in events if e.name() == "[memory]"):
            live += nbytes
            peak = max(peak, live)
        self.bytes = peak
