"""Stand-in for a vendor's torch device module (what `torch.cuda`, `torch.npu` are): the
functions AcceleratorBackend calls, implemented over the host CPU so the example runs anywhere.

A real vendor does not write this file: its torch extension already provides the module.
"""

from __future__ import annotations

import time
from types import SimpleNamespace

import torch

from backends.cpu import CPUBackend

_host = CPUBackend()  # accelbench's own host measurements (resident-memory high-water mark)


def is_available() -> bool:
    return True


def device_count() -> int:
    return 1


def set_device(index: int) -> None:
    if index != 0:
        raise ValueError(f"hostdev has one device (index 0), not {index}")


def synchronize(index: int | None = None) -> None:
    """Nothing is queued: CPU ops finish before they return."""


def get_device_name(index: int = 0) -> str:
    return "hostdev (CPU-hosted example device)"


def get_device_properties(index: int = 0) -> SimpleNamespace:
    return SimpleNamespace(total_memory=_host.describe().memory_bytes)


def manual_seed_all(seed: int) -> None:
    torch.manual_seed(seed)


def reset_peak_memory_stats(index: int = 0) -> None:
    _host.reset_peak_memory()


def max_memory_allocated(index: int = 0) -> int | None:
    """Peak resident memory since the last reset, or None where the OS cannot tell."""
    return _host.peak_memory_bytes()


class Event:
    """The torch.Event interface EventTimer uses, on the host clock."""

    def __init__(self, enable_timing: bool = False) -> None:
        self._at: float | None = None

    def record(self, stream: object = None) -> None:
        synchronize()
        self._at = time.perf_counter()

    def elapsed_time(self, end: Event) -> float:
        """Milliseconds from this event to `end`, like torch.Event.elapsed_time."""
        if self._at is None or end._at is None:
            raise RuntimeError("both events must be recorded before elapsed_time()")
        return (end._at - self._at) * 1e3
