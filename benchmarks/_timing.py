"""The timing loop the benchmark scripts share: one warm-up call, then the median wall time of `repeats` calls.

The scripts run as `python benchmarks/<script>.py`, which puts this folder on `sys.path`, so they import it as a
sibling (`from _timing import median_seconds`).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import torch


def timed(fn: Callable[[], Any], repeats: int, device: torch.device | None = None) -> tuple[float, Any]:
    """Median wall time of `fn()` over `repeats` runs after one warm-up run, and the last result.

    Args:
        fn (`Callable[[], Any]`): the work to time.
        repeats (`int`): timed runs after the warm-up.
        device (`torch.device`, *optional*): on a CUDA device every timed run is bracketed by
            `torch.cuda.synchronize`, so queued kernels count; otherwise nothing is synchronised.
    """
    sync = device is not None and device.type == "cuda"
    result = fn()  # warm-up
    times = []
    for _ in range(repeats):
        if sync:
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        result = fn()
        if sync:
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def median_seconds(fn: Callable[[], Any], repeats: int) -> float:
    """Median wall time of `fn()` over `repeats` runs after one warm-up run (CPU work: no synchronisation)."""
    return timed(fn, repeats)[0]
