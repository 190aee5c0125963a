"""Energy meters shared by the backends: a cumulative counter read before and after a window
(NVML total energy, RAPL energy_uj), or power samples taken in a thread and integrated
(NVML power usage, npu-smi). Also the Linux powercap (RAPL) reader of the CPU backend."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from backends.base import EnergyMeter, EnergyReading, NoEnergy

POWERCAP_ROOT_ENV = "ACCELBENCH_POWERCAP_ROOT"
"""Overrides /sys/class/powercap (tests point it at a fake tree)."""
DEFAULT_POWERCAP_ROOT = "/sys/class/powercap"


def _failure(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class CounterMeter(EnergyMeter):
    """Energy from a cumulative counter in joules, read at start and at stop.

    `read` returns the counter now; `wrap` is the counter's range when it wraps around (RAPL),
    so that stop < start means one wrap. A failing read gives joules=None with the reason."""

    def __init__(self, read: Callable[[], float], method: str, wrap: float | None = None) -> None:
        self._read, self.method, self._wrap = read, method, wrap
        self._start: float | None = None
        self._t0 = time.perf_counter()
        self._error = ""

    def start(self) -> None:
        self._t0 = time.perf_counter()
        try:
            self._start, self._error = self._read(), ""
        except Exception as exc:
            self._start, self._error = None, f"{self.method} failed: {_failure(exc)}"

    def stop(self) -> EnergyReading:
        seconds = time.perf_counter() - self._t0
        if self._start is None:
            return EnergyReading(seconds=seconds, method=self.method, reason=self._error)
        try:
            end = self._read()
        except Exception as exc:
            return EnergyReading(
                seconds=seconds, method=self.method, reason=f"{self.method} failed: {_failure(exc)}"
            )
        used = end - self._start
        if used < 0 and self._wrap:
            used += self._wrap
        if used < 0:
            return EnergyReading(
                seconds=seconds,
                method=self.method,
                reason=f"{self.method} went backwards ({self._start:.6g} J -> {end:.6g} J)",
            )
        return EnergyReading(joules=used, seconds=seconds, method=self.method)


class PowerSampler(EnergyMeter):
    """Energy as the time integral (trapezoid rule) of power samples taken every `interval_s`
    in a daemon thread, from start to stop (both ends sampled)."""

    def __init__(self, read_watts: Callable[[], float], method: str, interval_s: float) -> None:
        self._read, self.method, self.interval_s = read_watts, method, interval_s
        self._times: list[float] = []
        self._watts: list[float] = []
        self._error = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0 = time.perf_counter()

    def _sample(self) -> None:
        try:
            watts = float(self._read())
        except Exception as exc:
            self._error = self._error or f"{self.method} failed: {_failure(exc)}"
            return
        self._times.append(time.perf_counter())
        self._watts.append(watts)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def start(self) -> None:
        self._times, self._watts, self._error = [], [], ""
        self._stop.clear()
        self._t0 = time.perf_counter()
        self._sample()
        self._thread = threading.Thread(target=self._loop, name="power-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> EnergyReading:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()
        seconds = time.perf_counter() - self._t0
        method = f"{self.method}, sampled every {self.interval_s:g} s"
        if len(self._watts) < 2:
            reason = self._error or f"{self.method}: fewer than two power samples"
            return EnergyReading(seconds=seconds, method=method, reason=reason)
        from scipy.integrate import trapezoid  # ~0.25 s: only where power is sampled

        joules = float(trapezoid(self._watts, self._times))
        return EnergyReading(joules=joules, seconds=seconds, method=method)


def powercap_root() -> Path:
    """The powercap folder: $ACCELBENCH_POWERCAP_ROOT, else /sys/class/powercap."""
    return Path(os.environ.get(POWERCAP_ROOT_ENV) or DEFAULT_POWERCAP_ROOT)


def rapl_packages(root: Path) -> list[Path]:
    """The top-level RAPL zones (`intel-rapl:N`, one per CPU package) that have a readable
    energy counter. Subzones (`intel-rapl:N:M`: core, uncore, dram) are left out: the package
    counter already includes core and uncore."""
    zones = []
    for zone in sorted(root.glob("intel-rapl:*")):
        if zone.name.count(":") != 1:
            continue
        if os.access(zone / "energy_uj", os.R_OK):
            zones.append(zone)
    return zones


def _read_int(path: Path) -> int:
    return int(path.read_text().strip())


def rapl_meter(root: Path | None = None) -> EnergyMeter:
    """A counter over every RAPL package zone under `root` (summed, each unwrapped with its own
    max_energy_range_uj), or NoEnergy saying why none can be read."""
    root = root or powercap_root()
    if not root.is_dir():
        return NoEnergy(f"no RAPL energy counter: {root} does not exist (not exposed here)")
    zones = rapl_packages(root)
    if not zones:
        return NoEnergy(
            f"no readable RAPL energy counter under {root} (missing, or energy_uj is readable "
            "only by root)"
        )
    return _RaplMeter(zones)


class _RaplMeter(EnergyMeter):
    """Per-zone CounterMeters (each zone wraps at its own range), summed."""

    def __init__(self, zones: list[Path]) -> None:
        self.zones = zones
        self._meters = []
        for zone in zones:
            try:
                wrap = _read_int(zone / "max_energy_range_uj") / 1e6
            except (OSError, ValueError):
                wrap = None
            self._meters.append(
                CounterMeter(
                    lambda z=zone: _read_int(z / "energy_uj") / 1e6,
                    method=f"RAPL {zone.name}",
                    wrap=wrap,
                )
            )

    def start(self) -> None:
        for meter in self._meters:
            meter.start()

    def stop(self) -> EnergyReading:
        readings = [meter.stop() for meter in self._meters]
        method = "RAPL package energy counters (" + ", ".join(z.name for z in self.zones) + ")"
        seconds = max(r.seconds for r in readings)
        failed = [r.reason for r in readings if r.joules is None]
        if failed:
            return EnergyReading(seconds=seconds, method=method, reason="; ".join(failed))
        return EnergyReading(
            joules=sum(r.joules or 0.0 for r in readings), seconds=seconds, method=method
        )
