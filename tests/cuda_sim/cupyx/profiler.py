"""``cupyx.profiler.benchmark`` of the stand-in: host wall-clock times (work is synchronous)."""

from __future__ import annotations

import math as _math
import time as _time

import numpy as _np


class _PerfCaseResult:
    def __init__(self, name: str, cpu_times, gpu_times):
        self.name = name
        self.cpu_times = _np.asarray(cpu_times)
        self.gpu_times = _np.asarray([gpu_times])

    def __repr__(self) -> str:
        cpu, gpu = self.cpu_times * 1e6, self.gpu_times[0] * 1e6
        return (
            f"{self.name:<20s}:    CPU: {cpu.mean():9.3f} us   +/- {cpu.std():.3f} "
            f"us    GPU-0: {gpu.mean():9.3f} us   +/- {gpu.std():.3f} us"
        )

    __str__ = __repr__


def benchmark(
    func,
    args=(),
    kwargs=None,
    n_repeat=10000,
    *,
    name=None,
    n_warmup=10,
    max_duration=_math.inf,
    devices=None,
):
    kwargs = kwargs or {}
    for _ in range(n_warmup):
        func(*args, **kwargs)
    times, start = [], _time.perf_counter()
    for _ in range(n_repeat):
        t0 = _time.perf_counter()
        func(*args, **kwargs)
        times.append(_time.perf_counter() - t0)
        if _time.perf_counter() - start > max_duration:
            break
    return _PerfCaseResult(name or getattr(func, "__name__", "func"), times, times)
