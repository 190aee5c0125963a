"""Synthetic RunRecords with chosen timing samples, for statistical tests of compare/plots."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from functools import cache
from typing import Any

import numpy as np

from backends.base import DeviceInfo
from backends.cpu import CPUBackend
from harness.measurement.environment import capture_environment
from harness.measurement.timing import summarize
from harness.results.config import RunConfig
from harness.results.schema import CaseKey, CaseResult, EnvironmentInfo, RunRecord, Throughput

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


@cache
def _environment() -> EnvironmentInfo:
    return capture_environment()


@cache
def _device() -> DeviceInfo:
    return CPUBackend().describe()


def samples(median_s: float, n: int = 20, noise: float = 0.02, seed: int = 0) -> list[float]:
    """n positive samples around median_s with relative Gaussian noise."""
    rng = np.random.default_rng(seed)
    return [float(x) for x in median_s * (1.0 + noise * rng.standard_normal(n))]


def case(data: list[float] | None, status: str = "ok", batch: int = 16, **key: Any) -> CaseResult:
    """A case of workload `mlp` (fields overridable) measured as `data`, or failed."""
    fields: dict[str, Any] = {
        "workload": "mlp",
        "workload_version": "1",
        "mode": "train",
        "dtype": "fp32",
        "batch": batch,
        "preset": "tiny",
        **key,
    }
    if data is None or status != "ok":
        return CaseResult(
            key=CaseKey(**fields),
            status="failed",
            error={"kind": "exception", "message": "boom"},  # type: ignore[arg-type]
        )
    m = summarize(data, iterations_per_sample=1)
    return CaseResult(
        key=CaseKey(**fields),
        status="ok",
        measurement=m,
        throughput=Throughput(value=batch / m.median, unit="samples/s"),
    )


def run(
    cases: list[CaseResult],
    index: int = 0,
    device: str | None = None,
    commit: str | None = None,
    **environment: Any,
) -> RunRecord:
    """A complete run started `index` hours after T0 on this machine's CPU."""
    env = _environment().model_copy(update={"git_commit": commit, **environment})
    dev = _device() if device is None else _device().model_copy(update={"name": device})
    return RunRecord(
        run_id=f"run{index:04d}" + "0" * 24,
        started_at=T0 + timedelta(hours=index),
        status="complete",
        backend="cpu",
        config=RunConfig(preset="tiny"),
        environment=env,
        device=dev,
        cases=cases,
    )
