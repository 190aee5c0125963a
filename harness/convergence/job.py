"""One converge case end to end: the reference seeds (target and band), the honest
low-precision seeds, the device seeds, the stability events and the verdict; and the
isolation job that runs it (a ConvergeSpec as JSON in, a CaseResult as JSON out)."""

from __future__ import annotations

import gc
import statistics
from typing import Any

from pydantic import BaseModel, Field

from backends.base import DTYPES, Backend
from backends.cpu import CPUBackend
from backends.registry import get_backend
from harness.convergence.train import RunKind, SeedRun, start, train
from harness.errors import BenchError, failed_result
from harness.measurement.fallbacks import host_fallbacks
from harness.measurement.guard import never_raises
from harness.results import convergence_judge as judge
from harness.results.presets import ConvergeSettings
from harness.results.schema import (
    CaseKey,
    CaseResult,
    Convergence,
    ConvergenceEvent,
    SeedCurve,
    TelemetrySample,
)
from harness.stats import first_at_or_below
from workloads.base import CaseUnsupported, Workload
from workloads.registry import get_workload

REFERENCES: tuple[str, ...] = ("cpu:fp32",)
"""References a converge case trains (the CPU in fp32: the reference of the fidelity check)."""


class ConvergeSpec(BaseModel):
    """One converge case as plain data (sent to a worker process as JSON)."""

    backend: str
    key: CaseKey
    params: dict[str, Any] = Field(default_factory=dict)
    seed: int = 0
    """Seeds are seed, seed + 1, ... (settings.seeds of them)."""
    reference: str = "cpu:fp32"
    settings: ConvergeSettings = Field(default_factory=ConvergeSettings)


class Baseline(BaseModel):
    """The trusted seeds of a case: the reference's curves (whose median eval loss at the
    target step is the target) and, for a low-precision dtype, the honest run's curves (the
    dtype on the CPU), with their per-step train losses and gradient norms."""

    target: float
    reference: list[SeedCurve]
    honest: list[SeedCurve] = Field(default_factory=list)
    honest_name: str | None = None
    train_loss: list[list[float | None]] = Field(default_factory=list)
    grad_norm: list[list[float | None]] = Field(default_factory=list)


_BASELINES: dict[str, Baseline] = {}
"""Baselines trained in this process, by what they depend on: the reference of a workload's
seeds is shared by its dtypes and devices within one worker."""


def check_reference(reference: str) -> None:
    """BenchError naming the choices for a reference the converge mode cannot train."""
    if reference not in REFERENCES:
        raise BenchError(
            f"--mode converge trains its reference on {', '.join(REFERENCES)}; "
            f"got --reference '{reference}'."
        )


def _seeds(spec: ConvergeSpec) -> list[int]:
    return [spec.seed + i for i in range(spec.settings.seeds)]


def _cpu() -> CPUBackend:
    return CPUBackend()


def _run_to_target(
    backend: Backend,
    workload: Workload,
    dtype: str,
    spec: ConvergeSpec,
    seed: int,
    kind: str,
    target: float,
) -> SeedRun:
    s = spec.settings
    run = start(
        backend, workload, dtype, spec.key.preset, spec.params, seed, kind,  # type: ignore[arg-type]
        s.eval_every, s.eval_batches,
    )  # fmt: skip
    train(run, s.step_cap, target)
    return run


def baseline(spec: ConvergeSpec, workload: Workload) -> Baseline:
    """Train the reference seeds to the target step, take the target, train them on to it
    (or the cap); then the honest seeds (low precision only). Cached per process."""
    s = spec.settings
    dtype = spec.key.dtype
    cache_key = "|".join(
        [spec.key.model_dump_json(exclude={"dtype", "mode"}), s.model_dump_json(), spec.reference]
        + [str(x) for x in _seeds(spec)]
    )
    cached = _BASELINES.get(cache_key)
    if cached is None:
        runs = [
            start(
                _cpu(),
                workload,
                "fp32",
                spec.key.preset,
                spec.params,
                seed,
                "reference",
                s.eval_every,
                s.eval_batches,
            )
            for seed in _seeds(spec)
        ]
        for run in runs:
            train(run, s.target_step)
        at_step = [r.last_eval() for r in runs if r.steps == s.target_step]
        finite = [v for v in at_step if v is not None]
        if not finite:
            raise BenchError(
                f"the reference did not train {s.target_step} steps of {workload.name} "
                f"with a finite eval loss: no target."
            )
        target = judge.median_target(finite)
        initial = [r.curve.eval_loss[0] for r in runs if r.curve.eval_loss[0] is not None]
        untrained = judge.median_target(initial) if initial else None
        if untrained is not None and target >= untrained:
            raise BenchError(
                f"the reference's eval loss of {workload.name} did not fall in "
                f"{s.target_step} steps ({untrained:.4g} untrained, {target:.4g} at step "
                f"{s.target_step}, median over the seeds): no target; train longer "
                f"(--target-step) or evaluate on more batches."
            )
        for run in runs:
            train(run, s.step_cap, target)
        cached = Baseline(
            target=target,
            reference=[],
            train_loss=[r.train_loss for r in runs],
            grad_norm=[r.grad_norm for r in runs],
        )
        cached.reference = [_stamp(r, target) for r in runs]
        _BASELINES[cache_key] = cached
    if dtype == "fp32":
        return cached
    honest_key = f"{cache_key}|{dtype}"
    honest = _BASELINES.get(honest_key)
    if honest is None:
        runs = [
            _run_to_target(_cpu(), workload, dtype, spec, seed, "honest", cached.target)
            for seed in _seeds(spec)
        ]
        honest = cached.model_copy(
            update={
                "honest": [_stamp(r, cached.target) for r in runs],
                "honest_name": f"cpu:{dtype}",
                "train_loss": [*cached.train_loss, *[r.train_loss for r in runs]],
                "grad_norm": [*cached.grad_norm, *[r.grad_norm for r in runs]],
            }
        )
        _BASELINES[honest_key] = honest
    return honest


def _soak(run: SeedRun, spec: ConvergeSpec, workload: Workload, base: Baseline) -> list[SeedRun]:
    """Train the device seed `run` on past the target (--soak-steps, --soak-s); then, if it
    trained beyond what the baseline's seed covered, the reference seed (and the honest one,
    in low precision) as many steps, returned for the spike and outlier thresholds: a healthy
    run's own loss jumps past the target must count in the reference's spread, or a long soak
    flags them."""
    s = spec.settings
    until = max(s.soak_steps or 0, run.steps) if s.soak_steps else 10**9
    train(run, until, soak_s=s.soak_s, soak_from=run.steps)
    seed, steps = run.seed, run.steps
    if steps <= min(c.steps_trained for c in [*base.reference, *base.honest] if c.seed == seed):
        return []
    kinds: list[tuple[str, RunKind]] = [("fp32", "reference")]
    if spec.key.dtype != "fp32":
        kinds.append((spec.key.dtype, "honest"))
    runs = []
    for dtype, kind in kinds:
        trusted = start(
            _cpu(), workload, dtype, spec.key.preset, spec.params, seed, kind,
            s.eval_every, s.eval_batches,
        )  # fmt: skip
        train(trusted, steps)
        trusted.finish()
        runs.append(trusted)
    return runs


def _stamp(run: SeedRun, target: float) -> SeedCurve:
    """The run's curve with its steps and training seconds to the target; drops the model."""
    curve = run.finish()
    reached = first_at_or_below(curve.eval_steps, curve.eval_loss, target)
    curve.steps_to_target = reached
    if reached is not None:
        curve.time_to_target_s = sum(run.step_times[:reached])
        if curve.energy_j:
            curve.energy_to_target_j = curve.energy_j[curve.eval_steps.index(reached)]
    return curve


def converge(spec: ConvergeSpec) -> Convergence:
    """Train the case's seeds on the device to the reference's target; judge them."""
    check_reference(spec.reference)
    s = spec.settings
    workload = get_workload(spec.key.workload)
    backend = get_backend(spec.backend)
    if not backend.supports(DTYPES[spec.key.dtype]):
        raise CaseUnsupported(f"backend '{backend.name}' does not support {spec.key.dtype}")
    base = baseline(spec, workload)
    curves: list[SeedCurve] = []
    events: list[ConvergenceEvent] = []
    telemetry: list[TelemetrySample] = []
    energy_methods: list[str] = []
    energy_notes: list[str] = []
    device_losses: list[tuple[int, list[float | None], list[float | None]]] = []
    trusted_loss, trusted_norm = list(base.train_loss), list(base.grad_norm)
    for index, seed in enumerate(_seeds(spec)):
        run = _run_to_target(backend, workload, spec.key.dtype, spec, seed, "device", base.target)
        if index == 0 and (s.soak_steps or s.soak_s) and not run.stopped:
            for trusted in _soak(run, spec, workload, base):
                trusted_loss.append(trusted.train_loss)
                trusted_norm.append(trusted.grad_norm)
        device_losses.append((seed, run.train_loss, run.grad_norm))
        events.extend(run.events)
        telemetry.extend(run.telemetry)
        energy_methods.append(run.energy_method)
        energy_notes.append(run.energy_note)
        drift = judge.drift_event(seed, run.step_times)
        if drift is not None:
            events.append(drift)
        curve = _stamp(run, base.target)
        memory = judge.memory_event(seed, curve.eval_steps, curve.memory_bytes)
        if memory is not None:
            events.append(memory)
        curves.append(curve)
        gc.collect()
    spike = judge.jump_threshold(trusted_loss, judge.MIN_SPIKE_THRESHOLD)
    outlier = judge.jump_threshold(trusted_norm, judge.MIN_OUTLIER_THRESHOLD)
    for seed, losses, norms in device_losses:
        events.extend(judge.jump_events(seed, "spike", losses, spike))
        events.extend(judge.jump_events(seed, "grad_outlier", norms, outlier))
    events.sort(key=lambda e: (e.seed, e.step, e.kind))
    reference_steps = [c.steps_to_target for c in base.reference]
    honest_steps = [c.steps_to_target for c in base.honest]
    steps = [c.steps_to_target for c in curves]
    ratio = judge.steps_ratio(steps, reference_steps, s.step_cap)
    energy = [c.energy_to_target_j for c in curves]
    metered = [j for j in energy if j is not None]
    result = Convergence(
        target_loss=base.target,
        target_step=s.target_step,
        eval_every=s.eval_every,
        eval_batches=s.eval_batches,
        step_cap=s.step_cap,
        seeds=_seeds(spec),
        reference=spec.reference,
        steps_to_target=steps,
        reference_steps_to_target=reference_steps,
        band=judge.band(reference_steps, honest_steps, s.eval_every, base.honest_name),
        steps_ratio=ratio[0] if ratio else None,
        steps_ratio_ci=ratio[1] if ratio else None,
        time_to_target_s=[c.time_to_target_s for c in curves],
        energy_to_target_j=energy,
        energy_to_target_median_j=statistics.median(metered) if metered else None,
        energy_method=next((m for m in energy_methods if m), None) if metered else None,
        energy_note=None if metered else _energy_note(energy_notes, steps),
        telemetry=telemetry,
        spike_threshold=spike,
        grad_outlier_threshold=outlier,
        curves=[*base.reference, *base.honest, *curves],
        events=events,
        soak_steps=curves[0].steps_trained if (s.soak_steps or s.soak_s) else None,
    )
    result.verdict, result.reasons = judge.judge(result)
    return result


def _energy_note(notes: list[str], steps: list[int | None]) -> str:
    """Why a case has no energy to target: the meter's reason, or no seed reached it."""
    reason = next((n for n in notes if n), "")
    if reason:
        return reason
    return "no seed reached the target" if all(s is None for s in steps) else "not metered"


def run_converge_case(spec: ConvergeSpec) -> CaseResult:
    """The CaseResult of one converge case; never raises (harness.measurement.guard): an
    exception, an unsupported dtype or a bad reference is a failed (or unsupported) case with
    the message."""

    def run() -> CaseResult:
        with host_fallbacks() as fallbacks:
            convergence = converge(spec)
        return CaseResult(
            key=spec.key,
            status="ok",
            convergence=convergence,
            host_fallbacks=sorted(fallbacks) or None,
        )

    return never_raises(
        run, lambda kind, message: failed_result(CaseResult, spec.key, kind, message)
    )


def converge_job(payload: str) -> str:
    """The isolation job of one converge case: a ConvergeSpec as JSON in, a CaseResult out."""
    return run_converge_case(ConvergeSpec.model_validate_json(payload)).model_dump_json()
