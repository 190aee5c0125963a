"""The conformance checks catch backends that break the contract (deliberately broken
CPU-hosted test backends), and pass the honest CPU backend."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import pytest
import torch

from backends.base import DeviceTimer
from backends.cpu import CPUBackend
from harness.conformance import checks
from harness.conformance.checks import KitContext
from harness.conformance.kit import Check, plan_checks, run_check
from harness.conformance.outcome import CheckResult


def _run(backend: CPUBackend, check: Callable[[KitContext], str], name: str = "") -> CheckResult:
    ctx = KitContext(name or backend.name, backend)
    return run_check(Check("under test", check), ctx, timeout_s=60)


class _ZeroTimer(DeviceTimer):
    def time_block(self, fn: Callable[[], object], iterations: int) -> float:
        for _ in range(iterations):
            fn()
        return 0.0


class ZeroTimerBackend(CPUBackend):
    def timer(self) -> DeviceTimer:
        return _ZeroTimer()


class NoResetBackend(CPUBackend):
    def reset_peak_memory(self) -> None:
        """Forgets to reset."""


class NoAutocastBackend(CPUBackend):
    def autocast(self, dtype: torch.dtype) -> contextlib.AbstractContextManager[object]:
        return contextlib.nullcontext()


class ScalingPrepareBackend(CPUBackend):
    def prepare(self, model: torch.nn.Module) -> torch.nn.Module:
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.mul_(1.01)
        return model


class MadeUpDistBackend(CPUBackend):
    dist_backend = "hcl"


def test_timer_that_stops_early_fails() -> None:
    result = _run(ZeroTimerBackend(), checks.check_timer_completion)
    assert result.status == "fail"
    assert "it stops before the device work is done" in result.reason
    assert _run(ZeroTimerBackend(), checks.check_timer_accuracy).status == "fail"


def test_peak_memory_without_reset_fails() -> None:
    result = _run(NoResetBackend(), checks.check_peak_memory)
    assert result.status == "fail", result.reason


def test_autocast_that_does_nothing_fails() -> None:
    result = _run(NoAutocastBackend(), lambda ctx: checks.check_dtype(ctx, "bf16"))
    assert result.status == "fail"
    assert "under autocast(bf16) an fp32 Linear produced torch.float32" in result.reason


def test_prepare_that_changes_outputs_fails() -> None:
    result = _run(ScalingPrepareBackend(), checks.check_prepare)
    assert result.status == "fail"
    assert "outputs changed by up to" in result.reason


def test_made_up_dist_backend_fails() -> None:
    result = _run(MadeUpDistBackend(), checks.check_dist_backend)
    assert result.status == "fail"
    assert "'hcl' is not a torch.distributed backend" in result.reason


def test_registered_under_another_name_fails() -> None:
    result = _run(CPUBackend(), checks.check_identity, name="mydev")
    assert result.status == "fail"
    assert "registered as 'mydev' but its name is 'cpu'" in result.reason


def test_declared_unsupported_dtype_is_refused(test_plugins: dict[str, str]) -> None:
    from accelbench_test_plugins import NoFP16Backend  # type: ignore[import-not-found]

    result = _run(NoFP16Backend(), lambda ctx: checks.check_dtype(ctx, "fp16"))
    assert (result.status, result.reason) == (
        "pass",
        "declared unsupported; the harness refuses it",
    )


def test_exceptions_in_a_check_are_failures_with_their_message() -> None:
    def explode(ctx: KitContext) -> str:
        raise ValueError("driver said no")

    result = _run(CPUBackend(), explode)
    assert (result.status, result.reason) == ("fail", "ValueError: driver said no")


def test_kit_is_parametrized_by_dtypes_and_registered_workloads() -> None:
    names = [check.name for check in plan_checks()]
    assert {"dtype fp32", "dtype bf16", "dtype fp16", "placement: mlp"} <= set(names)
    assert len(names) == len(set(names))


@pytest.mark.parametrize(
    "check", [checks.check_peak_memory, checks.check_prepare, checks.check_seed]
)
def test_cpu_passes(check: Callable[[KitContext], str]) -> None:
    result = _run(CPUBackend(), check)
    assert result.status == "pass", result.reason


class NonTextSettingsBackend(CPUBackend):
    def settings(self) -> dict[str, str]:
        return {"threads": 4}  # type: ignore[dict-item]


def test_device_facts_check_passes_the_cpu_and_names_a_non_text_setting() -> None:
    honest = _run(CPUBackend(), checks.check_device_facts)
    assert honest.status == "pass", honest
    assert "settings, energy" in honest.reason
    broken = _run(NonTextSettingsBackend(), checks.check_device_facts)
    assert broken.status == "fail"
    assert broken.reason == "settings() must return dict[str, str], got {'threads': 4}"
