"""The host CPU: host-clock timing and the process's own peak resident memory."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
import os
import platform
import re
from collections.abc import Callable
from pathlib import Path

import torch

from backends.base import Availability, Backend, DeviceInfo, DeviceTimer, HostTimer

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def cpu_model_name() -> str:
    """The CPU model as the OS reports it (best effort, never raises)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _status_bytes(field: str) -> int | None:
    """A memory field of /proc/self/status (VmRSS, VmHWM) in bytes, or None if unreadable."""
    try:
        match = re.search(rf"^{field}:\s+(\d+)\s+kB", _STATUS.read_text(), re.MULTILINE)
    except OSError:
        return None
    return int(match.group(1)) * 1024 if match else None


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim, or None where the C library has none."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.malloc_trim  # type: ignore[no-any-return]
    except (OSError, AttributeError):
        return None


def release_free_heap() -> None:
    """Collect garbage and return freed heap pages to the OS (glibc), so that memory a previous
    case held or freed is not counted, nor silently reused, by the next case."""
    gc.collect()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


class CPUBackend(Backend):
    name = "cpu"
    device_type = "cpu"
    dist_backend = "gloo"
    supported_dtypes = ("fp32", "bf16", "fp16", "fp64")

    def __init__(self, index: int = 0) -> None:
        self.index = index
        self._peak_resettable = True
        release_free_heap()
        self._baseline_rss = _status_bytes("VmRSS") or 0

    @classmethod
    def availability(cls) -> Availability:
        return Availability(ok=True)

    def device(self, index: int = 0) -> torch.device:
        return torch.device("cpu")

    def synchronize(self) -> None:
        """Nothing to wait for: CPU ops complete before they return."""

    def timer(self) -> DeviceTimer:
        return HostTimer()

    def reset_peak_memory(self) -> None:
        """Reset the process's resident-set high-water mark (Linux clear_refs), if possible."""
        try:
            _CLEAR_REFS.write_text("5")
        except OSError:
            self._peak_resettable = False

    def peak_memory_bytes(self) -> int | None:
        """Peak resident memory since the last reset, above what the process held when this
        backend was created (so a case's model, data and activations, not torch's libraries).
        None where the OS cannot reset the high-water mark."""
        peak = _status_bytes("VmHWM") if self._peak_resettable else None
        if peak is None:
            return None
        return max(peak - self._baseline_rss, 0)

    def describe(self) -> DeviceInfo:
        cores = os.cpu_count() or 1
        return DeviceInfo(
            backend=self.name,
            device_type=self.device_type,
            name=cpu_model_name(),
            count=1,
            memory_bytes=_total_memory_bytes(),
            runtime={"torch": torch.__version__, "threads": str(torch.get_num_threads())},
            extra={"logical_cores": str(cores), "machine": platform.machine()},
        )


def _total_memory_bytes() -> int | None:
    try:
        match = re.search(r"^MemTotal:\s+(\d+)\s+kB", Path("/proc/meminfo").read_text(), re.M)
    except OSError:
        return None
    return int(match.group(1)) * 1024 if match else None
