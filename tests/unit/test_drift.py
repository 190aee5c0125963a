"""`bench doctor`'s drift figures: the resolvable change and the drift windows."""

from __future__ import annotations

import math

import pytest
from scipy import stats as sps

from backends.cpu import CPUBackend
from harness.measurement.doctor import cpu_times, drift_checks, measure_drift, resolvable_change
from harness.measurement.yardstick import YARDSTICKS


def test_resolvable_change_is_the_t_half_width_of_two_runs_of_rounds() -> None:
    assert resolvable_change(0.0, 5) == 0.0
    expected = math.expm1(sps.t.ppf(0.975, 8) * 0.05 * math.sqrt(2 / 5))
    assert resolvable_change(0.05, 5) == pytest.approx(expected)
    assert resolvable_change(0.05, 10) < resolvable_change(0.05, 5) < resolvable_change(0.05, 3)


def test_drift_windows_and_their_checks() -> None:
    drift = measure_drift(CPUBackend(), seconds=1.0, window_s=0.25, size=64)
    assert len(drift.window_medians_s) == 4
    assert drift.spread >= 1.0 and drift.cv >= 0.0
    # the yardsticks are read after every window; the most drifting kernel sets the floor
    assert set(drift.yardsticks) == set(YARDSTICKS)
    assert all(len(readings) == 4 for readings in drift.yardsticks.values())
    kernels = drift.kernel_drift()
    assert set(kernels) == {"matmul", *YARDSTICKS}
    assert kernels["matmul"] == pytest.approx((drift.spread, drift.cv))
    worst_cv = max(cv for _, cv in kernels.values())
    assert kernels[drift.most_drifting][1] == worst_cv
    assert drift.resolvable == pytest.approx(resolvable_change(worst_cv, drift.rounds))
    names = [check.name for check in drift_checks(drift)]
    assert names[:5] == [
        "drift (64x64 matmul, 4 windows of 0.25 s)",
        "drift (dispatch yardstick, read after each window)",
        "drift (train yardstick, read after each window)",
        "drift (compute yardstick, read after each window)",
        f"smallest resolvable change (5 rounds per run, {drift.most_drifting})",
    ]
    if cpu_times() is not None:  # Linux: steal is read from /proc/stat
        assert drift.steal is not None and 0.0 <= drift.steal <= 1.0
