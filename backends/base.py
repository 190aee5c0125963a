"""The Backend contract: everything device-specific that the harness may call."""

from __future__ import annotations

import contextlib
import random
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import torch
from pydantic import BaseModel, ConfigDict

from backends.device import DeviceInfo
from backends.profiling import ProfileWindow, torch_profiler_window

DTYPES: dict[str, torch.dtype] = {
    "fp32": torch.float32,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
    "fp64": torch.float64,
}
"""Short dtype names used on the command line and in stored results."""


def dtype_name(dtype: torch.dtype) -> str:
    """The short name of a torch dtype (inverse of DTYPES)."""
    for name, value in DTYPES.items():
        if value == dtype:
            return name
    raise KeyError(f"unsupported dtype {dtype}")


class Availability(BaseModel):
    """Whether a backend can run here; when not, why and what would fix it."""

    model_config = ConfigDict(frozen=True)

    ok: bool
    reason: str = ""
    hint: str = ""

    def explain(self) -> str:
        """One human sentence: the reason, then the hint when there is one."""
        if self.ok:
            return "available"
        return f"{self.reason} {self.hint}".strip()


class EnergyReading(BaseModel):
    """Energy the device used between EnergyMeter.start() and stop(), or why it is unknown."""

    joules: float | None = None
    seconds: float = 0.0
    """Wall time between start and stop."""
    method: str = ""
    """How the energy was obtained, e.g. "NVML total energy counter" or "RAPL package"."""
    reason: str = ""
    """Why `joules` is None: no source, or the source failed."""


class EnergyMeter(ABC):
    """Measures the energy a device uses over one window: start(), then stop().

    Implementations never raise from start() or stop(): a failing source gives a reading with
    joules=None and the reason."""

    @abstractmethod
    def start(self) -> None:
        """Begin a window."""

    @abstractmethod
    def stop(self) -> EnergyReading:
        """End the window begun by start() and return its energy."""


class NoEnergy(EnergyMeter):
    """A meter for a device with no energy or power reading: every window says why."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def start(self) -> None:
        return None

    def stop(self) -> EnergyReading:
        return EnergyReading(reason=self.reason)


class DeviceTimer(ABC):
    """Times blocks of calls on one device, completion of the device work included."""

    clock: ClassVar[str] = "host clock"
    """What `stamp` reads, in words (stored with phase breakdowns)."""

    @abstractmethod
    def time_block(self, fn: Callable[[], object], iterations: int) -> float:
        """Seconds taken by `iterations` back-to-back calls of `fn`, all device work done."""

    def stamp(self) -> Any:
        """A point in the device's timeline, taken without waiting for queued work where the
        device can record one (events); read it with `seconds_between` after `settle()`.

        Default: the host clock, which sees the device only after the work is done, so it
        is exact for host-synchronous devices (the CPU) and for timers that override it."""
        return time.perf_counter()

    def settle(self) -> None:
        """Wait until every stamp taken so far can be read (the one synchronize of a phase-
        timed iteration). Default: nothing to wait for."""
        return None

    def seconds_between(self, start: Any, end: Any) -> float:
        """Seconds from stamp `start` to stamp `end`; both settled."""
        return float(end - start)


class HostTimer(DeviceTimer):
    """Host monotonic clock around the block, with a device synchronize before and after."""

    def __init__(self, synchronize: Callable[[], None] = lambda: None) -> None:
        self._synchronize = synchronize

    def stamp(self) -> float:
        """The host clock after the device's queued work is done: a host clock cannot see
        the device's queue, so a device with asynchronous work pays a synchronize per stamp
        here (the CPU's synchronize does nothing, so on the CPU stamps cost no wait)."""
        self._synchronize()
        return time.perf_counter()

    def time_block(self, fn: Callable[[], object], iterations: int) -> float:
        sync = self._synchronize
        sync()
        start = time.perf_counter()
        for _ in range(iterations):
            fn()
        sync()
        return time.perf_counter() - start


class Backend(ABC):
    """One device family. Subclasses are registered by name (see backends.registry)."""

    name: ClassVar[str]
    device_type: ClassVar[str]
    dist_backend: ClassVar[str]
    supported_dtypes: ClassVar[tuple[str, ...]] = ("fp32", "bf16", "fp16")
    warns_once_per_process: ClassVar[bool] = False
    """The runtime warns of a host fallback once per operator per process (torch_npu), so a
    case's fallbacks are complete only in a fresh process: the runner gives each case its
    own worker."""

    @classmethod
    @abstractmethod
    def availability(cls) -> Availability:
        """Whether this backend can run on this machine. Never raises."""

    @classmethod
    def prepare_process(cls) -> None:
        """Process-wide settings of this backend, applied once in each process that measures,
        before its first torch operation (so that threads torch starts later inherit them).
        Default: none."""
        return None

    def device(self, index: int = 0) -> torch.device:
        """The torch device for the given index."""
        return torch.device(self.device_type, index)

    @abstractmethod
    def synchronize(self) -> None:
        """Block until all queued work on the device is done."""

    @abstractmethod
    def timer(self) -> DeviceTimer:
        """A timer whose readings include the completion of device work."""

    @abstractmethod
    def reset_peak_memory(self) -> None:
        """Start a new peak-memory window."""

    @abstractmethod
    def peak_memory_bytes(self) -> int | None:
        """Peak memory since the last reset, or None when the device cannot tell."""

    def supports(self, dtype: torch.dtype) -> bool:
        """Whether models can run in this dtype here."""
        try:
            return dtype_name(dtype) in self.supported_dtypes
        except KeyError:
            return False

    def autocast(self, dtype: torch.dtype) -> contextlib.AbstractContextManager[object]:
        """Mixed-precision context for `dtype`; a no-op for full-precision dtypes."""
        if dtype in (torch.float32, torch.float64):
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=dtype)

    def prepare(self, model: torch.nn.Module) -> torch.nn.Module:
        """Vendor hook applied to every model before it runs; identity by default."""
        return model

    def profiler_activities(self) -> list[torch.profiler.ProfilerActivity]:
        """What torch.profiler must record to see this backend's work: the host only, by
        default (a host-synchronous device)."""
        return [torch.profiler.ProfilerActivity.CPU]

    def profile_window(
        self, step: Callable[[], object], iterations: int, trace_path: Path | None = None
    ) -> ProfileWindow:
        """Run `step` `iterations` times under this backend's profiler and return a row per
        operator call (backends.profiling), writing the Chrome trace to `trace_path` when
        given. Default: torch.profiler with `profiler_activities()`; a backend whose device
        torch.profiler cannot see overrides this with its own profiler."""
        return torch_profiler_window(
            step, iterations, self.profiler_activities(), self.synchronize, trace_path
        )

    @abstractmethod
    def describe(self) -> DeviceInfo:
        """Name, count, memory, runtime versions and known peaks of the device."""

    def settings(self) -> dict[str, str]:
        """Settings that change numerics or speed on this device (precision modes, determinism,
        thread counts, relevant environment variables, versions, clocks), as name -> text.
        Recorded with every run and named by `bench compare` when two runs differ. Vendor
        plugins extend it (`{**super().settings(), ...}`). Never raises: unreadable values are
        left out. Default: none."""
        return {}

    def fp32_downcasts(self) -> list[str]:
        """The settings now on that let fp32 matmuls or convolutions run in a reduced precision
        (TF32, HF32, ...), as "name=value"; empty when fp32 means fp32 here."""
        return []

    def energy_meter(self) -> EnergyMeter:
        """A meter of the energy this device uses (counter or integrated power samples).
        Default: none, with the reason."""
        return NoEnergy(f"backend '{self.name}' exposes no energy counter or power reading")

    def telemetry(self) -> dict[str, float]:
        """One sample of what the device exposes of its state: clock_mhz, power_w,
        temperature_c (any subset). Never raises; empty when nothing is exposed."""
        return {}

    def seed(self, seed: int) -> None:
        """Seed every random generator a workload may use on this backend."""
        random.seed(seed)
        torch.manual_seed(seed)
