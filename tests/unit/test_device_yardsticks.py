"""On an accelerator the yardsticks are device-bound (a large bf16 GEMM, a copy larger than any
L2), not the CPU's microsecond kernels; and a host fallback inside a yardstick is never
charged to the case whose fallbacks are being collected around it."""

from __future__ import annotations

import warnings
from collections.abc import Callable

from backends.base import DeviceTimer
from backends.cpu import CPUBackend
from harness.measurement.fallbacks import host_fallbacks
from harness.measurement.yardstick import (
    COPY_YARDSTICK_BYTES,
    GEMM_YARDSTICK,
    YARDSTICKS,
    read_yardsticks,
    yardstick_names,
)

FALLBACK = (
    "The operator 'aten::yardstick_op' is not currently supported on the NPU backend and will "
    "fall back to run on the CPU. This may have performance implications."
)


def test_accelerators_get_device_bound_yardsticks() -> None:
    assert yardstick_names("cpu") == YARDSTICKS
    for device_type in ("cuda", "npu"):
        names = yardstick_names(device_type)
        assert {"gemm", "copy"} <= set(names)
        assert not {"train", "compute"} & set(names)
    # ~1 ms on an H100 (989 TFLOP/s bf16); more than 4x the 50 MB L2 of an H100 and above the
    # 192 MB of an Ascend 910B
    assert 2 * GEMM_YARDSTICK**3 / 989e12 > 5e-4
    assert COPY_YARDSTICK_BYTES > 192e6


class FallbackTimer(DeviceTimer):
    """The CPU timer of a device whose every timed block falls back to the host once."""

    clock = "host"

    def __init__(self, inner: DeviceTimer) -> None:
        self.inner = inner

    def time_block(self, fn: Callable[[], object], iterations: int) -> float:
        warnings.warn(FALLBACK, UserWarning, stacklevel=1)
        return self.inner.time_block(fn, iterations)


class FallbackInYardstickBackend(CPUBackend):
    name = "fallback-yardstick"

    def timer(self) -> DeviceTimer:
        return FallbackTimer(super().timer())


def test_yardstick_fallbacks_are_not_charged_to_the_case() -> None:
    with host_fallbacks() as found:
        readings = read_yardsticks(FallbackInYardstickBackend())
        warnings.warn(FALLBACK.replace("yardstick_op", "case_op"), UserWarning, stacklevel=1)
    assert set(readings) == set(YARDSTICKS)
    assert found == {"aten::case_op"}
