"""The one case pipeline: build a case, then measure one round of it, the same way on every
path. What differs between paths is a `CaseStrategy`:

- `LocalStrategy`: one process (`bench run`, its rounds in the isolation worker, the
  conformance kit);
- harness.distributed.worker's strategy: every rank of a torchrun job, samples synchronised
  per block (`measure_synchronized`), data-parallel training context, DDP phases;
- the scenario engine builds through `build_case` and serves requests on the built instance.

A strategy supplies the build context, the timing of a step, the phase breakdown and which
features it cannot offer (each with the reason, recorded in the result). Everything else
(rehearsal, yardsticks, the training-state snapshot, energy window, peak memory, NaN/Inf
check, host-fallback capture, profile) is here, once.

Every round of a training case measures the same training state: the model, optimizer and
loss scaler (`Instance.snapshot`) are copied right after the build and put back before every
round, and before the phase and profile windows, so no round measures a model trained longer
than another (a step that slows as training goes on, e.g. as denormals appear, would
otherwise make later rounds slower). Each round then warms up as fully as the first.
"""

from __future__ import annotations

import gc
import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

import torch

from backends.base import Backend
from harness.measurement.denormals import count_denormals
from harness.measurement.fallbacks import host_fallbacks
from harness.measurement.phases import PhaseTimer, instance_phase_timer
from harness.measurement.profile import profile_step
from harness.measurement.timing import measure
from harness.measurement.yardstick import read_yardsticks
from harness.results.config import MeasureSettings
from harness.results.schema import DenormalCount, OpProfile, RankTiming
from harness.run.case import CaseSpec, PhaseSamples, RoundEnergy, RoundResult, RoundSpec
from workloads.base import BuildContext, Instance
from workloads.registry import get_workload

ELSEWHERE_NONFINITE = "another process's output is NaN/Inf"
"""The reason a process whose own output is finite gives when another one's is not."""


@dataclass(frozen=True)
class Timed:
    """The raw outcome of timing a step for one round."""

    samples_s: list[float]
    iterations_per_sample: int
    warmup_iterations: int
    cold_start_s: float | None
    total_time_s: float
    stable: bool
    per_rank: list[RankTiming] | None = None


class CaseStrategy(Protocol):
    """How one way of running a case differs from the others. A further way (a serving
    engine, training to a target) implements these and calls `build_case`/`measure_round`."""

    world: int
    """Processes stepping together (work, FLOPs and bytes of a step are `world` x one's)."""
    energy_refusal: str | None
    """Why this path reads no energy (None: it does)."""
    profile_refusal: str | None
    """Why this path cannot profile (None: it can)."""

    def context_kind(self) -> type[BuildContext] | None:
        """The BuildContext subclass workloads get (None: the plain one)."""

    def time_step(
        self,
        step: Callable[[], object],
        backend: Backend,
        settings: MeasureSettings,
        time_cold_start: bool,
        iterations: int | None,
        on_warm: Callable[[], None] | None = None,
    ) -> Timed:
        """Time `step` for one round (`settings` already split for the round); `on_warm()`,
        when given, is called once between the warm-up and the first timed sample."""

    def any_rank(self, flag: bool) -> bool:
        """Whether `flag` holds in any process of the case (every process must then take the
        same branch, e.g. skip the phases after a NaN/Inf output)."""

    def phases(
        self, instance: Instance, mode: str, backend: Backend, share: float, warm_up: bool
    ) -> PhaseSamples | None:
        """Raw phase iterations of the staged step (`share` of a case's iterations), or None
        when the mode has no phases."""


class LocalStrategy:
    """One process: `harness.measurement.timing.measure`, PhaseTimer iterations."""

    world = 1
    energy_refusal: str | None = None
    profile_refusal: str | None = None

    def context_kind(self) -> type[BuildContext] | None:
        return None

    def time_step(
        self,
        step: Callable[[], object],
        backend: Backend,
        settings: MeasureSettings,
        time_cold_start: bool,
        iterations: int | None,
        on_warm: Callable[[], None] | None = None,
    ) -> Timed:
        m = measure(
            step,
            backend,
            **settings.model_dump(),
            time_cold_start=time_cold_start,
            iterations=iterations,
            on_warm=on_warm,
        )
        return Timed(
            samples_s=list(m.samples_s),
            iterations_per_sample=m.iterations_per_sample,
            warmup_iterations=m.warmup_iterations,
            cold_start_s=m.cold_start_s,
            total_time_s=m.total_time_s,
            stable=m.stable,
        )

    def any_rank(self, flag: bool) -> bool:
        return flag

    def phases(
        self, instance: Instance, mode: str, backend: Backend, share: float, warm_up: bool
    ) -> PhaseSamples | None:
        timer = instance_phase_timer(instance, mode, backend, share, warm_up)
        return phase_samples(timer, instance) if timer is not None else None


def phase_samples(timer: PhaseTimer, instance: Instance, attribution: str = "") -> PhaseSamples:
    """The raw iterations of `timer`, with the instance's optimizer traffic."""
    traffic = instance.optimizer_traffic()
    return PhaseSamples(
        iterations=timer.iterations,
        step_times=timer.step_times,
        clock=timer.clock,
        attribution=attribution,
        optimizer_bytes=traffic[0] if traffic else None,
        optimizer_bytes_note=traffic[1] if traffic else "",
    )


@dataclass
class BuiltCase:
    """A case built in this process, kept alive between its rounds."""

    spec: CaseSpec
    backend: Backend
    instance: Instance
    step: Callable[[], None]
    held_bytes: int | None
    """What the process held before the build (peak memory is counted above it)."""
    state: dict[str, Any] | None = None
    """The training state every round starts from (training modes only)."""
    state_bytes: int = 0
    """Bytes of `state`: held by the harness, not the case, so left out of its peak."""
    peak_memory_bytes: int | None = None
    iterations: int | None = None
    """Calls per sample, fixed by the case's first round in this process."""
    rounds_done: int = 0
    extras: dict[str, Any] = field(default_factory=dict)
    """What a strategy keeps with the case (e.g. the distributed context)."""


_REHEARSED: set[str] = set()
"""Cases (by `case_cache_key`) this process has rehearsed."""


def case_cache_key(spec: CaseSpec) -> str:
    """What identifies a built case in a process (its spec, less the measurement budget)."""
    return spec.model_dump_json(exclude={"measure"})


def rehearse(spec: CaseSpec, backend: Backend, kind: type[BuildContext] | None = None) -> None:
    """Once per case per process: build the case, run one step and release it. Its first
    step makes allocations the process keeps for its whole life (kernel and primitive caches
    for the case's shapes, lazily loaded libraries); rehearsed, the case's measured peak
    memory is that of a repeat of itself, so the first case of a process reads like any
    other (on a shared CPU host the one-time part is 5 to 25 MiB, varying by host). Build
    and step failures raise here, as they would from the measured build."""
    cache_key = case_cache_key(spec)
    if cache_key in _REHEARSED:
        return
    instance = get_workload(spec.key.workload).build(spec.build_context(backend, kind))
    instance.step(spec.key.mode)()
    backend.synchronize()
    del instance
    gc.collect()
    _REHEARSED.add(cache_key)


def held_memory(backend: Backend) -> int | None:
    """What this process holds now, in the backend's peak-memory terms (reset, then read)."""
    backend.synchronize()
    backend.reset_peak_memory()
    return backend.peak_memory_bytes()


def _state_bytes(value: object) -> int:
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, dict):
        return sum(_state_bytes(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(_state_bytes(v) for v in value)
    return 0


def build_case(
    spec: CaseSpec, backend: Backend, strategy: CaseStrategy, timed: bool = True
) -> BuiltCase:
    """Build `spec` on `backend` the one way every path does: seeded, with the strategy's
    context; for training, the state every round starts from is copied. `timed` (a case
    whose step is measured): after a rehearsal, and with its step made; the scenario
    engine, which serves requests instead and reads no peak memory, builds without either.
    Raises CaseUnsupported when the backend lacks the dtype or the workload cannot run the
    case; other failures raise as they are."""
    from workloads.base import CaseUnsupported

    reason = spec.unsupported_reason(backend)
    if reason is not None:
        raise CaseUnsupported(reason)
    kind = strategy.context_kind()
    if timed:
        rehearse(spec, backend, kind)
    held = held_memory(backend)
    context = spec.build_context(backend, kind)
    instance = get_workload(spec.key.workload).build(context)
    step = instance.step(spec.key.mode) if timed else _untimed
    built = BuiltCase(spec, backend, instance, step, held, extras={"context": context})
    if spec.key.mode == "train":
        built.state = instance.snapshot()
        built.state_bytes = _state_bytes(built.state)
    backend.synchronize()
    return built


def _untimed() -> None:
    raise RuntimeError("this case was built without a timed step (build_case(timed=False))")


def round_settings(settings: MeasureSettings, rounds: int, first: bool) -> MeasureSettings:
    """The settings of one of `rounds` rounds: the sampling budget (`max_time_s`,
    `min_samples`, `max_samples`) divided by the rounds (at least 2 samples a round, so slow
    cases whose samples outlast the budget take as many samples in all as without rounds),
    the full warm-up on a case's first round in a process (`first`), else a short one
    (warmup_s / rounds, one call)."""
    values = settings.model_dump()
    values["max_time_s"] = settings.max_time_s / rounds
    values["min_samples"] = max(2, math.ceil(settings.min_samples / rounds))
    values["max_samples"] = max(values["min_samples"], math.ceil(settings.max_samples / rounds))
    if not first:
        values["warmup_s"] = settings.warmup_s / rounds
        values["warmup_iterations"] = min(1, settings.warmup_iterations)
    return MeasureSettings.model_construct(**values)


def _restore(built: BuiltCase) -> None:
    if built.state is not None:
        built.instance.restore(built.state)
        built.backend.synchronize()


def measure_round(built: BuiltCase, job: RoundSpec, strategy: CaseStrategy) -> RoundResult:
    """Measure round `job.round` of `job.rounds` of a built case: yardsticks, then (from the
    case's training state) the step in the energy window, the NaN/Inf check, the phases
    (`1/rounds` of the case's iterations), and on the last round the profile. Raises on a
    failure of the case; a NaN/Inf output is a `failed` round that keeps its samples."""
    spec, key, backend, instance = built.spec, built.spec.key, built.backend, built.instance
    first = built.rounds_done == 0
    yardsticks = read_yardsticks(backend)
    _restore(built)
    if first:
        backend.reset_peak_memory()
    settings = round_settings(spec.measure, job.rounds, first=first or built.state is not None)
    meter = backend.energy_meter() if strategy.energy_refusal is None else None
    # The meter starts after the warm-up: cold start, warm-up and compile time would otherwise
    # dilute the average power and make J/step read low.
    on_warm = meter.start if meter is not None else None
    timed = strategy.time_step(built.step, backend, settings, first, built.iterations, on_warm)
    reading = meter.stop() if meter is not None else None
    if first:
        peak = backend.peak_memory_bytes()
        held = (built.held_bytes or 0) + built.state_bytes
        built.peak_memory_bytes = max(peak - held, 0) if peak is not None else None
        built.iterations = timed.iterations_per_sample
    built.rounds_done += 1
    work = instance.work(key.mode)
    median = statistics.median(timed.samples_s)
    common: dict[str, Any] = {
        "key": key,
        "round": job.round,
        "samples_s": timed.samples_s,
        "iterations_per_sample": timed.iterations_per_sample,
        "warmup_iterations": timed.warmup_iterations,
        "cold_start_s": timed.cold_start_s,
        "total_time_s": timed.total_time_s,
        "stable": timed.stable,
        "world": strategy.world,
        "work_items": work.items,
        "work_unit": work.unit,
        "flops": instance.flops(key.mode),
        "bytes_moved": instance.bytes_moved(key.mode),
        "yardsticks": yardsticks,
        "energy": RoundEnergy(**reading.model_dump()) if reading is not None else None,
        "energy_note": strategy.energy_refusal,
        "peak_memory_bytes": built.peak_memory_bytes,
        "per_rank": timed.per_rank,
    }
    reason = instance.nonfinite_reason()
    if strategy.any_rank(reason is not None):
        message = reason or ELSEWHERE_NONFINITE
        error = {"kind": "nonfinite", "message": message}
        return RoundResult.model_validate({**common, "status": "failed", "error": error})
    _restore(built)
    phases = strategy.phases(instance, key.mode, backend, 1.0 / job.rounds, first)
    profile = None
    if job.round == job.rounds - 1 and spec.profile and strategy.profile_refusal is None:
        _restore(built)
        profile = case_profile(spec, built.step, backend)
    extra = instance.extra_metrics(key.mode, median)
    denormals = None
    if job.round == job.rounds - 1 and key.mode == "train" and strategy.world == 1:
        denormals = _denormals(instance, built.step, backend)
    return RoundResult.model_validate(
        {**common, "phases": phases, "profile": profile, "extra": extra, "denormals": denormals}
    )


def _denormals(
    instance: Instance, step: Callable[[], None], backend: Backend
) -> DenormalCount | None:
    """The denormal values a training case left in its model, gradients, optimizer state and
    one more step's activations (after every timed window: counting trains one step); None
    for an instance without one model and optimizer."""
    model = getattr(instance, "model", None)
    if not isinstance(model, torch.nn.Module):
        return None
    optimizer = getattr(instance, "optimizer", None)
    if not isinstance(optimizer, torch.optim.Optimizer):
        optimizer = None
    return count_denormals(model, optimizer, step=step, probe_flush=backend.device_type == "cpu")


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


def with_fallbacks(run: Callable[[], RoundResult]) -> RoundResult:
    """`run()` with the operators the device ran on the host meanwhile recorded."""
    with host_fallbacks() as found:
        result = run()
    return result.model_copy(update={"host_fallbacks": sorted(found)})
