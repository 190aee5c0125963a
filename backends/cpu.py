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
from typing import Literal

import torch

from backends.accelerator import BackendUnavailable
from backends.base import (
    Availability,
    Backend,
    DeviceInfo,
    DeviceTimer,
    EnergyMeter,
    HostTimer,
)
from backends.energy import rapl_meter
from backends.settings import ask, env_settings, torch_settings

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


ISA_FLAGS = (
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "avx_vnni",
    "amx_tile",
    "amx_bf16",
    "amx_int8",
    "amx_fp16",
    "asimd",
    "sve",
    "sve2",
    "bf16",
    "i8mm",
)
"""cpuinfo feature flags that decide which matmul kernels run (x86 AVX/AVX-512/AMX, Arm
NEON/SVE/BF16)."""
CPU_ENV = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "KMP_AFFINITY",
    "OMP_PROC_BIND",
    "ONEDNN_MAX_CPU_ISA",
    "DNNL_MAX_CPU_ISA",
    "ATEN_CPU_CAPABILITY",
)


def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def isa_features(cpuinfo: str | None = None) -> list[str]:
    """The ISA_FLAGS the first processor of /proc/cpuinfo lists (x86 `flags`, Arm
    `Features`), in ISA_FLAGS order; empty where cpuinfo is unreadable."""
    text = _cpuinfo() if cpuinfo is None else cpuinfo
    match = re.search(r"^(?:flags|Features)\s*:(.*)$", text, re.MULTILINE)
    present = set(match.group(1).split()) if match else set()
    return [flag for flag in ISA_FLAGS if flag in present]


DENORMALS_ENV = "ACCELBENCH_CPU_DENORMALS"
"""`flush` (the default) or `keep`: how the CPU backend's processes treat denormal values."""
DenormalPolicy = Literal["flush", "keep"]
DENORMAL_POLICIES: tuple[DenormalPolicy, ...] = ("flush", "keep")


def denormal_policy() -> DenormalPolicy:
    """The denormal handling asked for by $ACCELBENCH_CPU_DENORMALS: `flush` (default:
    flush-to-zero and denormals-are-zero in every thread) or `keep` (IEEE gradual underflow,
    the CPU's slow path). Raises BackendUnavailable naming the choices for anything else."""
    value = os.environ.get(DENORMALS_ENV, "flush").strip().lower() or "flush"
    for policy in DENORMAL_POLICIES:
        if value == policy:
            return policy
    reason = (
        f"${DENORMALS_ENV} must be one of {', '.join(DENORMAL_POLICIES)}, "
        f"got {os.environ[DENORMALS_ENV]!r}."
    )
    raise BackendUnavailable("cpu", Availability(ok=False, reason=reason))


def denormal_flush_coverage() -> float:
    """Fraction of a parallel operation's elements that came out flushed to zero: the
    smallest positive denormal times 1.0 over a tensor large enough to be split across every
    intra-op thread. 1.0: every thread flushes (torch.set_flush_denormal is per thread, and a
    thread inherits it only from the thread that creates it); 0.0: none does."""
    count = max(torch.get_num_threads(), 1) * (1 << 16)
    smallest = torch.ones(count, dtype=torch.int32).view(torch.float32)  # bit pattern 1
    with torch.inference_mode():
        product = smallest * 1.0
    return float((product == 0).sum()) / count


def cpu_settings() -> dict[str, str]:
    """Threads (torch intra/inter-op, OMP/MKL variables), ISA features, the ISA torch
    dispatches to, oneDNN switches, fp32 matmul precision, deterministic algorithms and the
    frequency governor where readable."""
    found = {
        **torch_settings(),
        "torch.num_threads": ask(torch.get_num_threads),
        "torch.num_interop_threads": ask(torch.get_num_interop_threads),
        "torch.cpu_capability": ask(torch.backends.cpu.get_cpu_capability),
        "mkldnn.enabled": ask(lambda: torch.backends.mkldnn.enabled),
        "mkl.available": ask(torch.backends.mkl.is_available),
        "cpu.isa": " ".join(isa_features()) or None,
        "cpu.governor": _read_text("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"),
        "cpu.denormals": ask(denormal_policy),
    }
    settings = {name: value for name, value in found.items() if value is not None}
    return {**settings, **env_settings(CPU_ENV)}


def _read_text(path: str) -> str | None:
    try:
        return Path(path).read_text().strip() or None
    except OSError:
        return None


def cpu_clock_mhz(cpuinfo: str | None = None) -> float | None:
    """Mean current clock of the processors (/proc/cpuinfo `cpu MHz`), None where absent."""
    text = _cpuinfo() if cpuinfo is None else cpuinfo
    values = [float(v) for v in re.findall(r"^cpu MHz\s*:\s*([0-9.]+)", text, re.MULTILINE)]
    return sum(values) / len(values) if values else None


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
        self.denormals = denormal_policy()
        self._peak_resettable = True
        release_free_heap()
        self._baseline_rss = _status_bytes("VmRSS") or 0

    @classmethod
    def availability(cls) -> Availability:
        return Availability(ok=True)

    @classmethod
    def prepare_process(cls) -> None:
        """Denormal handling ($ACCELBENCH_CPU_DENORMALS, `denormal_policy`): with `flush`,
        flush-to-zero and denormals-are-zero on this thread before torch starts its intra-op
        threads, which inherit them (the floating-point environment is per thread and copied
        at thread creation), so every thread flushes; with `keep`, IEEE denormals. Call it
        before the process's first parallel torch operation; `denormal_flush_coverage` tells
        afterwards whether every thread got it."""
        torch.set_flush_denormal(denormal_policy() == "flush")

    def device(self, index: int = 0) -> torch.device:
        return torch.device("cpu")

    def synchronize(self) -> None:
        """Nothing to wait for: CPU ops complete before they return."""

    def timer(self) -> DeviceTimer:
        return HostTimer()

    def reset_peak_memory(self) -> None:
        """Restart the process's resident-set high-water mark (Linux clear_refs) from what it
        holds now, after returning freed heap to the OS, if possible."""
        release_free_heap()
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

    def settings(self) -> dict[str, str]:
        return cpu_settings()

    def energy_meter(self) -> EnergyMeter:
        """RAPL package counters under /sys/class/powercap ($ACCELBENCH_POWERCAP_ROOT)."""
        return rapl_meter()

    def telemetry(self) -> dict[str, float]:
        clock = cpu_clock_mhz()
        return {} if clock is None else {"clock_mhz": clock}


def _total_memory_bytes() -> int | None:
    try:
        match = re.search(r"^MemTotal:\s+(\d+)\s+kB", Path("/proc/meminfo").read_text(), re.M)
    except OSError:
        return None
    return int(match.group(1)) * 1024 if match else None
