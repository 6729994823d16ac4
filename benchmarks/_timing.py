"""Timing helpers shared by the benchmark scripts (best-of-n wall times: robust to a noisy machine)."""
from __future__ import annotations

import time
from typing import Callable


def best_time(fn: Callable[[], object], repeat: int = 3, warmup: int = 1) -> float:
    """Best wall time of ``repeat`` calls after ``warmup`` calls."""
    return best_times([fn], repeat, warmup)[0]


def best_times(fns: list[Callable[[], object]], repeat: int = 3, warmup: int = 1) -> list[float]:
    """Best wall time of each function, calls interleaved (a load spike on a shared machine
    then hits both sides of a ratio alike), after ``warmup`` calls each."""
    for _ in range(warmup):
        for fn in fns:
            fn()
    best = [float("inf")] * len(fns)
    for _ in range(repeat):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - t0)
    return best
