"""The one timer every benchmark uses (docs/timing.md).

``warmup`` calls are discarded; the clock is ``time.perf_counter_ns`` read after ``torch.cuda.synchronize`` on
CUDA, so the time is that of the work, not of queueing kernels; every call is returned raw (medians and p95 are
computed at aggregation, never here).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_calls(fn: Callable[[], Any], warmup: int, repeats: int, device: torch.device) -> list[float]:
    """Seconds of each of ``repeats`` calls of ``fn`` after ``warmup`` discarded calls."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        synchronize(device)
        tick = time.perf_counter_ns()
        fn()
        synchronize(device)
        out.append((time.perf_counter_ns() - tick) / 1e9)
    return out


def time_once(fn: Callable[[], Any], device: torch.device) -> float:
    """Seconds of one call of ``fn`` (no warm-up)."""
    return time_calls(fn, 0, 1, device)[0]


def matmul_gflops(device: torch.device, size: int = 512, repeats: int = 20) -> float:
    """This machine's fp32 matmul rate (GFLOP/s, median of ``repeats`` ``size``³ products): the FLOP floor's
    denominator, measured in the same process as the timings it is compared with."""
    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    seconds = sorted(time_calls(lambda: a @ b, 3, repeats, device))[repeats // 2]
    return 2 * size**3 / seconds / 1e9
