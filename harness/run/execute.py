"""Run one case in the current process: build, time, derive figures, classify failures."""

from __future__ import annotations

import functools
import time
from datetime import datetime, timezone
from typing import Any

import torch
from pydantic import BaseModel, Field

from backends.base import DTYPES, Backend
from backends.registry import get_backend
from harness.errors import describe_exception, is_oom
from harness.measurement.energy import case_energy
from harness.measurement.timing import measure, summarize
from harness.results.config import MeasureSettings
from harness.results.schema import CaseError, CaseKey, CaseResult, Measurement, Throughput
from workloads.base import BuildContext, CaseUnsupported, ContextT, Instance
from workloads.registry import get_workload


class CaseSpec(BaseModel):
    """Everything a worker needs to run one case; plain data, sent as JSON."""

    backend: str
    key: CaseKey
    params: dict[str, Any] = Field(default_factory=dict)
    seed: int = 0
    measure: MeasureSettings = Field(default_factory=MeasureSettings)

    def unsupported_reason(self, backend: Backend) -> str | None:
        """Why `backend` cannot run this case's dtype, or None when it can."""
        if backend.supports(DTYPES[self.key.dtype]):
            return None
        return f"backend '{backend.name}' does not support {self.key.dtype}"

    def build_context(
        self,
        backend: Backend,
        kind: type[ContextT] = BuildContext,  # type: ignore[assignment]
    ) -> ContextT:
        """The BuildContext of this case on `backend`, seeded; `kind` lets the distributed
        harness hand workloads its own context (data-parallel training)."""
        key = self.key
        return kind.seeded(
            backend,
            dtype_name=key.dtype,
            batch_size=key.batch,
            preset=key.preset,
            params=self.params,
            seed=self.seed,
            compile=key.compile,
        )


def failed(spec: CaseSpec, kind: str, message: str, **extra: Any) -> CaseResult:
    """A CaseResult for a case that produced no measurement."""
    status = "unsupported" if kind == "unsupported" else "failed"
    return CaseResult(
        key=spec.key,
        status=status,
        error=CaseError(kind=kind, message=message),  # type: ignore[arg-type]
        **extra,
    )


def execute_case(spec: CaseSpec) -> CaseResult:
    """Build and measure one case here. Never raises for a failure of the case itself:
    exceptions, out-of-memory, NaN/Inf output and unsupported dtypes become failed results."""
    started = datetime.now(timezone.utc)
    t0 = time.perf_counter()
    try:
        result = _measure_case(spec)
    except CaseUnsupported as exc:
        result = failed(spec, "unsupported", str(exc))
    except Exception as exc:
        result = failed(spec, "oom" if is_oom(exc) else "exception", describe_exception(exc))
    result.started_at = started
    result.duration_s = time.perf_counter() - t0
    return result


@functools.cache
def prime_process() -> None:
    """Once per process: one small forward, backward and AdamW step on the host and one
    bootstrap CI, so that the first case of a process does not pay (in time or in peak memory)
    for loading the kernels, thread pools and modules (scipy) that every case shares."""
    summarize([1.0, 2.0, 3.0], iterations_per_sample=1)
    layer = torch.nn.Linear(512, 512)
    optimizer = torch.optim.AdamW(layer.parameters())
    with torch.inference_mode():
        layer(torch.randn(256, 512))
    layer(torch.randn(256, 512)).sum().backward()
    optimizer.step()


def _measure_case(spec: CaseSpec) -> CaseResult:
    key = spec.key
    prime_process()
    backend = get_backend(spec.backend)
    reason = spec.unsupported_reason(backend)
    if reason is not None:
        return failed(spec, "unsupported", reason)
    workload = get_workload(key.workload)
    instance = workload.build(spec.build_context(backend))
    step = instance.step(key.mode)
    backend.synchronize()
    backend.reset_peak_memory()
    meter = backend.energy_meter()
    meter.start()
    measurement = measure(step, backend, **spec.measure.model_dump())
    energy_reading = meter.stop()
    peak_memory = backend.peak_memory_bytes()
    reason = instance.nonfinite_reason()
    if reason is not None:
        return failed(spec, "nonfinite", reason, measurement=measurement)
    result = measured_result(spec, instance, measurement)
    result.peak_memory_bytes = peak_memory
    work = instance.work(key.mode)
    result.energy, result.energy_note = case_energy(
        energy_reading, measurement.median, work.items, work.unit
    )
    return result


def measured_result(
    spec: CaseSpec, instance: Instance, measurement: Measurement, world: int = 1
) -> CaseResult:
    """The `ok` CaseResult of `measurement`, whose median is the step time.

    Work, FLOPs and bytes are the instance's per process, so with `world` processes stepping
    together the step's totals and the throughput are `world` times theirs. Peak memory is
    left for the caller, who knows which processes' peaks to take."""
    mode = spec.key.mode
    seconds = measurement.median
    work = instance.work(mode)
    flops = instance.flops(mode)
    moved = instance.bytes_moved(mode)
    return CaseResult(
        key=spec.key,
        status="ok",
        measurement=measurement,
        throughput=Throughput(value=world * work.items / seconds, unit=f"{work.unit}/s"),
        flops_per_step=world * flops if flops is not None else None,
        achieved_flops=world * flops / seconds if flops else None,
        bytes_per_step=world * moved if moved is not None else None,
        achieved_bandwidth=world * moved / seconds if moved else None,
        extra=instance.extra_metrics(mode, seconds),
    )


def case_job(payload: str) -> str:
    """The isolation job of one case: a CaseSpec as JSON in, its CaseResult as JSON out."""
    return execute_case(CaseSpec.model_validate_json(payload)).model_dump_json()
