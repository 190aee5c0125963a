"""Run one case in the current process: build, time, derive figures, classify failures.

A case is measured either in one go (`execute_case`, `case_job`) or in rounds (`round_job`):
a round job measures one case for one round and keeps the built instance in this process's
cache (`_BUILT`), so the case's later rounds reuse it; `clear_cache_job` empties the cache.
The cache lives in whatever process runs the jobs (a worker, or the runner with
`--isolate none`); a fresh process simply rebuilds on its first round of a case.
"""

from __future__ import annotations

import functools
import gc
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, Field

from backends.base import DTYPES, Backend, EnergyReading
from backends.registry import get_backend
from harness.errors import failure
from harness.measurement.energy import case_energy
from harness.measurement.fallbacks import host_fallbacks
from harness.measurement.phases import PhaseTimer, instance_phases
from harness.measurement.profile import profile_step
from harness.measurement.timing import measure, summarize
from harness.measurement.yardstick import append_readings, read_yardsticks
from harness.results.config import MeasureSettings
from harness.results.schema import (
    CaseError,
    CaseKey,
    CaseResult,
    Measurement,
    OpProfile,
    Throughput,
)
from workloads.base import BuildContext, CaseUnsupported, ContextT, Instance
from workloads.registry import get_workload


class CaseSpec(BaseModel):
    """Everything a worker needs to run one case; plain data, sent as JSON."""

    backend: str
    key: CaseKey
    params: dict[str, Any] = Field(default_factory=dict)
    seed: int = 0
    measure: MeasureSettings = Field(default_factory=MeasureSettings)
    profile: bool = False
    """Profile the step after its measurement (`bench run --profile`)."""
    trace_dir: str | None = None
    """Where the profiled step's Chrome trace goes (`--profile-trace`); None: no trace."""

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
        with host_fallbacks() as fallbacks:
            result = _measure_case(spec)
        result.host_fallbacks = sorted(fallbacks) or None
    except CaseUnsupported as exc:
        result = failed(spec, "unsupported", str(exc))
    except Exception as exc:
        result = failed(spec, *failure(exc))
    result.started_at = started
    result.duration_s = time.perf_counter() - t0
    return result


@functools.cache
def prime_process() -> None:
    """Once per process: one small forward, backward and AdamW step on the host and one
    bootstrap CI, so that the first case of a process does not pay (in time or in peak memory)
    for loading the kernels, thread pools and modules (scipy) that every case shares. Then
    the objects alive (torch's modules, ~330k of them once the optimizer has loaded dynamo)
    are frozen out of the garbage collector: the collections that keep memory readings clean
    cost ~0.2 s each otherwise, several per case."""
    summarize([1.0, 2.0, 3.0], iterations_per_sample=1)
    layer = torch.nn.Linear(512, 512)
    optimizer = torch.optim.AdamW(layer.parameters())
    with torch.inference_mode():
        layer(torch.randn(256, 512))
    layer(torch.randn(256, 512)).sum().backward()
    optimizer.step()
    del layer, optimizer
    gc.collect()
    gc.freeze()


def _measure_case(spec: CaseSpec) -> CaseResult:
    key = spec.key
    prime_process()
    backend = get_backend(spec.backend)
    reason = spec.unsupported_reason(backend)
    if reason is not None:
        return failed(spec, "unsupported", reason)
    rehearse(spec, backend)
    yardsticks = read_yardsticks(backend)
    held = _held_memory(backend)
    workload = get_workload(key.workload)
    instance = workload.build(spec.build_context(backend))
    step = instance.step(key.mode)
    backend.synchronize()
    backend.reset_peak_memory()
    meter = backend.energy_meter()
    meter.start()
    measurement = measure(step, backend, **spec.measure.model_dump())
    energy_reading = meter.stop()
    peak_memory = _case_peak(backend.peak_memory_bytes(), held)
    reason = instance.nonfinite_reason()
    if reason is not None:
        return failed(spec, "nonfinite", reason, measurement=measurement)
    result = measured_result(spec, instance, measurement)
    result.peak_memory_bytes = peak_memory
    result.yardstick = append_readings(None, yardsticks)
    work = instance.work(key.mode)
    result.energy, result.energy_note = case_energy(
        energy_reading, measurement.median, work.items, work.unit
    )
    result.phases = instance_phases(instance, key.mode, backend)
    if spec.profile:
        result.profile = case_profile(spec, step, backend)
    return result


def case_profile(spec: CaseSpec, step: Callable[[], None], backend: Backend) -> OpProfile:
    """The case's top operators (harness.measurement.profile), and its Chrome trace in
    `spec.trace_dir` when asked (named by time, backend and case; stored as the path
    relative to the results folder)."""
    trace: Path | None = None
    if spec.trace_dir is not None:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%f")
        trace = (
            Path(spec.trace_dir) / f"{stamp}-{spec.backend}-{spec.key.id.replace('/', '_')}.json"
        )
    profile = profile_step(step, backend, trace_path=trace)
    if trace is not None:
        profile.trace = f"{trace.parent.name}/{trace.name}"
    return profile


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


class RoundSpec(BaseModel):
    """One round job: measure `case` for round `round` (from 0) of `rounds`, appending to
    `previous`, the case's result over its earlier rounds (None for its first round)."""

    case: CaseSpec
    round: int = Field(ge=0)
    rounds: int = Field(ge=1)
    previous: CaseResult | None = None


@dataclass
class _Built:
    """A built case kept alive between its rounds."""

    backend: Backend
    instance: Instance
    step: Any
    peak_memory_bytes: int | None
    phase_timer: PhaseTimer | None = None
    """Instrumented iterations of the case's training step, added round by round."""


_BUILT: dict[str, _Built] = {}
"""Built cases of this process by `_cache_key`; emptied by `clear_cache`."""


def _cache_key(spec: CaseSpec) -> str:
    return spec.model_dump_json(exclude={"measure"})


def clear_cache() -> None:
    """Drop every built case of this process and collect the garbage they leave."""
    _BUILT.clear()
    gc.collect()


def clear_cache_job(payload: str) -> str:
    """The isolation job that empties the worker's cache of built cases (payload unused)."""
    clear_cache()
    return ""


def round_settings(settings: MeasureSettings, rounds: int, first: bool) -> dict[str, Any]:
    """The `measure` keyword arguments of one of `rounds` rounds: the sampling budget
    (`max_time_s`, `min_samples`, `max_samples`) divided by the rounds (at least 2 samples a
    round, so slow cases whose samples outlast the budget take as many samples in all as
    without rounds), the full warm-up on a case's first round in a process (`first`), else a short
    one (warmup_s / rounds, one call)."""
    values = settings.model_dump()
    values["max_time_s"] = settings.max_time_s / rounds
    values["min_samples"] = max(2, math.ceil(settings.min_samples / rounds))
    values["max_samples"] = max(values["min_samples"], math.ceil(settings.max_samples / rounds))
    if not first:
        values["warmup_s"] = settings.warmup_s / rounds
        values["warmup_iterations"] = min(1, settings.warmup_iterations)
    return values


_REHEARSED: set[str] = set()
"""Cases (by `_cache_key`) this process has rehearsed."""


def rehearse(spec: CaseSpec, backend: Backend) -> None:
    """Once per case per process: build the case, run one step and release it. Its first
    step makes allocations the process keeps for its whole life (kernel and primitive caches
    for the case's shapes, lazily loaded libraries); rehearsed, the case's measured peak
    memory is that of a repeat of itself, so the first case of a process reads like any
    other (on a shared CPU host the one-time part is 5 to 25 MiB, varying by host). Build
    and step failures raise here, as they would from the measured build."""
    cache_key = _cache_key(spec)
    if cache_key in _REHEARSED:
        return
    instance = get_workload(spec.key.workload).build(spec.build_context(backend))
    instance.step(spec.key.mode)()
    backend.synchronize()
    del instance
    gc.collect()
    _REHEARSED.add(cache_key)


def _held_memory(backend: Backend) -> int | None:
    """What this process holds now, in the backend's peak-memory terms (reset, then read)."""
    backend.synchronize()
    backend.reset_peak_memory()
    return backend.peak_memory_bytes()


def _case_peak(peak: int | None, held: int | None) -> int | None:
    """A case's peak memory: the peak since its build began, less what the process held
    before it (None where the backend cannot tell)."""
    return max(peak - (held or 0), 0) if peak is not None else None


def merge_rounds(
    previous: Measurement | None, new: Measurement, round_index: int, precision: float
) -> Measurement:
    """One Measurement of `previous` (earlier rounds) and `new` (one round, taken as round
    `round_index`): samples concatenated with their rounds, warm-up and time summed, the cold
    start of the first round, statistics recomputed over all rounds (`summarize`)."""
    if previous is None:
        samples, labels = list(new.samples_s), [round_index] * new.n
        return summarize(
            samples,
            iterations_per_sample=new.iterations_per_sample,
            warmup_iterations=new.warmup_iterations,
            cold_start_s=new.cold_start_s,
            total_time_s=new.total_time_s,
            stable=new.stable,
            sample_rounds=labels,
            precision=precision,
        )
    return summarize(
        previous.samples_s + new.samples_s,
        iterations_per_sample=previous.iterations_per_sample,
        warmup_iterations=previous.warmup_iterations + new.warmup_iterations,
        cold_start_s=previous.cold_start_s,
        total_time_s=previous.total_time_s + new.total_time_s,
        stable=new.stable,
        sample_rounds=previous.sample_rounds + [round_index] * new.n,
        precision=precision,
    )


def execute_round(job: RoundSpec) -> CaseResult:
    """Measure one round of a case here, building it on a miss of this process's cache and
    reusing it after. Never raises for a failure of the case: like `execute_case`, failures
    become failed results (and the case leaves the cache). `started_at` is the first round's,
    `duration_s` sums the rounds."""
    started = datetime.now(timezone.utc)
    t0 = time.perf_counter()
    spec = job.case
    try:
        with host_fallbacks() as fallbacks:
            result = _measure_round(job)
        earlier = job.previous.host_fallbacks if job.previous is not None else None
        result.host_fallbacks = sorted(fallbacks | set(earlier or [])) or None
    except CaseUnsupported as exc:
        result = failed(spec, "unsupported", str(exc))
    except Exception as exc:
        result = failed(spec, *failure(exc))
    if result.status != "ok":
        _BUILT.pop(_cache_key(spec), None)
    previous = job.previous
    result.started_at = previous.started_at if previous and previous.started_at else started
    earlier = (previous.duration_s or 0.0) if previous is not None else 0.0
    result.duration_s = earlier + time.perf_counter() - t0
    return result


def _measure_round(job: RoundSpec) -> CaseResult:
    spec, key = job.case, job.case.key
    prime_process()
    cache_key = _cache_key(spec)
    built = _BUILT.get(cache_key)
    fresh = built is None
    if built is None:
        backend = get_backend(spec.backend)
        reason = spec.unsupported_reason(backend)
        if reason is not None:
            return failed(spec, "unsupported", reason)
        rehearse(spec, backend)
        yardsticks = read_yardsticks(backend)
        held = _held_memory(backend)
        instance = get_workload(key.workload).build(spec.build_context(backend))
        built = _Built(backend, instance, instance.step(key.mode), None)
        built.backend.synchronize()
        built.backend.reset_peak_memory()
    else:
        yardsticks = read_yardsticks(built.backend)
    before = job.previous.measurement if job.previous is not None else None
    meter = built.backend.energy_meter()
    meter.start()
    measurement = measure(
        built.step,
        built.backend,
        **round_settings(spec.measure, job.rounds, first=fresh),
        time_cold_start=before is None,
        iterations=before.iterations_per_sample if before is not None else None,
    )
    reading = meter.stop()
    if fresh:
        built.peak_memory_bytes = _case_peak(built.backend.peak_memory_bytes(), held)
        _BUILT[cache_key] = built
    reason = built.instance.nonfinite_reason()
    if reason is not None:
        return failed(spec, "nonfinite", reason, measurement=measurement)
    merged = merge_rounds(before, measurement, job.round, spec.measure.precision)
    result = measured_result(spec, built.instance, merged)
    earlier_readings = job.previous.yardstick if job.previous is not None else None
    result.yardstick = append_readings(earlier_readings, yardsticks)
    kept = job.previous.peak_memory_bytes if job.previous is not None else None
    result.peak_memory_bytes = kept if kept is not None else built.peak_memory_bytes
    work = built.instance.work(key.mode)
    result.energy, result.energy_note = case_energy(
        _add_readings(job.previous, reading), merged.median, work.items, work.unit
    )
    if built.phase_timer is None:
        built.phase_timer = PhaseTimer(built.backend)
    last = job.round == job.rounds - 1
    result.phases = instance_phases(
        built.instance, key.mode, built.backend, built.phase_timer, 1.0 / job.rounds, last
    )
    if last and spec.profile:  # once, after the last measurement
        result.profile = case_profile(spec, built.step, built.backend)
    return result


def _add_readings(previous: CaseResult | None, reading: EnergyReading) -> EnergyReading:
    """This round's energy reading plus the earlier rounds' (their joules and seconds), so
    the case's average power covers every measured round; a round without joules says why."""
    earlier = previous.energy if previous is not None else None
    if earlier is None or reading.joules is None:
        return reading
    joules, seconds = earlier.joules + reading.joules, earlier.seconds + reading.seconds
    return reading.model_copy(update={"joules": joules, "seconds": seconds})


def round_job(payload: str) -> str:
    """The isolation job of one round of one case: a RoundSpec as JSON in, the case's
    CaseResult over all its rounds so far as JSON out."""
    return execute_round(RoundSpec.model_validate_json(payload)).model_dump_json()
