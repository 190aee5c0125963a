"""One generic accelerator backend over torch's device-agnostic APIs.

CUDA, Ascend and vendor plugins subclass it and change only what differs: how the runtime
is loaded, why it may be missing, and what is known about the device.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any, ClassVar

import torch

from backends.base import Availability, Backend, DeviceInfo, DeviceTimer
from backends.peaks import lookup_peaks


class BackendUnavailable(RuntimeError):
    """Raised when a backend is constructed on a machine where it cannot run."""

    def __init__(self, name: str, availability: Availability) -> None:
        super().__init__(f"backend '{name}' is unavailable: {availability.explain()}")
        self.availability = availability


class EventTimer(DeviceTimer):
    """One device event pair around a block of iterations; one synchronize per block.

    Recording an event costs host time (microseconds), so an event per iteration would be
    charged to launch-bound steps; the pair brackets the whole block instead.
    """

    clock: ClassVar[str] = "device events"

    def __init__(self, make_event: Callable[[], Any], synchronize: Callable[[], None]) -> None:
        self._make_event = make_event
        self._synchronize = synchronize

    def time_block(self, fn: Callable[[], object], iterations: int) -> float:
        """Device seconds from before the first call of `fn` to after the last."""
        start, end = self._make_event(), self._make_event()
        self._synchronize()
        start.record()
        for _ in range(iterations):
            fn()
        end.record()
        self._synchronize()
        return float(start.elapsed_time(end)) / 1000.0

    def stamp(self) -> Any:
        """A timing event recorded on the current stream; no wait."""
        event = self._make_event()
        event.record()
        return event

    def settle(self) -> None:
        self._synchronize()

    def seconds_between(self, start: Any, end: Any) -> float:
        return float(start.elapsed_time(end)) / 1000.0


class AcceleratorBackend(Backend):
    """A device reached through `torch.get_device_module(device_type)` and device events."""

    install_hint: ClassVar[str] = ""

    def __init__(self, index: int = 0) -> None:
        availability = self.availability()
        if not availability.ok:
            raise BackendUnavailable(self.name, availability)
        self.index = index
        self.module = self.device_module()
        self.module.set_device(index)

    # --- what subclasses may change -------------------------------------------------------
    @classmethod
    def load_runtime(cls) -> None:
        """Import whatever makes the device type known to torch (e.g. torch_npu). Default: none."""

    @classmethod
    def device_module(cls) -> ModuleType:
        """The torch device module (torch.cuda, torch.npu, ...) for this device type."""
        return torch.get_device_module(cls.device_type)

    @classmethod
    def unavailable_reason(cls, module: ModuleType) -> Availability:
        """Why the runtime loaded but no device can be used."""
        return Availability(
            ok=False,
            reason=f"no {cls.device_type} device is visible to torch {torch.__version__}.",
            hint=cls.install_hint,
        )

    def runtime_versions(self) -> dict[str, str]:
        """Versions of the device runtime, for the stored environment."""
        return {"torch": torch.__version__}

    # --- the generic path -----------------------------------------------------------------
    @classmethod
    def availability(cls) -> Availability:
        try:
            cls.load_runtime()
        except Exception as exc:  # a broken runtime must never break `bench`
            return Availability(
                ok=False,
                reason=f"the {cls.name} runtime failed to load: {type(exc).__name__}: {exc}",
                hint=cls.install_hint,
            )
        try:
            module = cls.device_module()
            if not module.is_available() or module.device_count() < 1:
                return cls.unavailable_reason(module)
        except Exception as exc:
            return Availability(
                ok=False,
                reason=f"querying {cls.device_type} devices failed: {type(exc).__name__}: {exc}",
                hint=cls.install_hint,
            )
        return Availability(ok=True)

    def device(self, index: int | None = None) -> torch.device:
        return torch.device(self.device_type, self.index if index is None else index)

    def synchronize(self) -> None:
        self.module.synchronize(self.index)

    def _make_event(self) -> Any:
        event_cls = getattr(self.module, "Event", None)
        if event_cls is not None:
            return event_cls(enable_timing=True)
        return torch.Event(device=self.device(), enable_timing=True)

    def timer(self) -> DeviceTimer:
        return EventTimer(self._make_event, self.synchronize)

    def profiler_activities(self) -> list[torch.profiler.ProfilerActivity]:
        """The host and the device: torch.profiler's activity of this device type, the
        PrivateUse1 one for out-of-tree devices (npu and vendor plugins)."""
        activity = torch.profiler.ProfilerActivity
        known = {"cuda": activity.CUDA, "xpu": activity.XPU, "mtia": activity.MTIA}
        known["hpu"] = activity.HPU
        return [activity.CPU, known.get(self.device_type, activity.PrivateUse1)]

    def supports(self, dtype: torch.dtype) -> bool:
        """The declared dtypes; for bf16 also the device module's is_bf16_supported() where it
        has one (older GPUs and first-generation Ascend 910 lack bf16)."""
        if dtype == torch.bfloat16:
            is_bf16_supported = getattr(self.module, "is_bf16_supported", None)
            if is_bf16_supported is not None and not is_bf16_supported():
                return False
        return super().supports(dtype)

    def reset_peak_memory(self) -> None:
        self.module.reset_peak_memory_stats(self.index)

    def peak_memory_bytes(self) -> int | None:
        """The device module's max_memory_allocated; None where the module cannot tell."""
        peak = self.module.max_memory_allocated(self.index)
        return None if peak is None else int(peak)

    def describe(self) -> DeviceInfo:
        name = str(self.module.get_device_name(self.index))
        props = self.module.get_device_properties(self.index)
        peaks = lookup_peaks(name)
        return DeviceInfo(
            backend=self.name,
            device_type=self.device_type,
            name=name,
            count=int(self.module.device_count()),
            memory_bytes=getattr(props, "total_memory", None),
            runtime=self.runtime_versions(),
            peak_flops=peaks.flops if peaks else {},
            peak_bandwidth=peaks.bandwidth if peaks else None,
            peak_source=peaks.source if peaks else "",
            peak_sources=peaks.sources if peaks else {},
        )

    def seed(self, seed: int) -> None:
        super().seed(seed)
        manual_seed_all = getattr(self.module, "manual_seed_all", None)
        if manual_seed_all is not None:
            manual_seed_all(seed)
