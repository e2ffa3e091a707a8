"""Where a job computes: its device, its CPU threads and the one autocast every forward pass uses.

Every entry point (train, evaluate, rerank, latency, throughput, the device check) starts with :func:`start`, and
every forward pass that may run in bf16 goes through :func:`autocast`, so the model a job trains, scores and times
is the same model at the same precision.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


def pick_device(name: str) -> torch.device:
    """``auto`` (CUDA when visible, else CPU), ``cuda`` (refused without a GPU) or ``cpu``."""
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("train.device is 'cuda' but no CUDA device is visible; use 'auto' or 'cpu'")
    return torch.device("cuda" if name in ("auto", "cuda") and torch.cuda.is_available() else "cpu")


def start(threads: int, device_name: str) -> torch.device:
    """The preamble of every job: torch's CPU thread budget, then the device it runs on."""
    torch.set_num_threads(threads)
    return pick_device(device_name)


@contextmanager
def cpu_threads(threads: int) -> Iterator[None]:
    """Torch's CPU thread budget set to ``threads`` inside the block (offline work inside a timing job, e.g. the scale
    step's exact ranking on every core), restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def uses_bf16(device: torch.device, amp: bool) -> bool:
    """Whether :func:`autocast` runs in bf16 here: ``amp`` on CUDA (the tables' ``dtype`` labels read this too)."""
    return amp and device.type == "cuda"


def autocast(device: torch.device, amp: bool) -> torch.autocast:
    """bf16 autocast on CUDA when ``amp``; a no-op on CPU. Callers cast features back to fp32 before scoring:
    bf16 scores would create ties under the strict tie rule of ``vtrbench.metrics``."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=uses_bf16(device, amp))
