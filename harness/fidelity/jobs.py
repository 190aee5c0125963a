"""Fidelity checks: does training on a backend follow the same trajectory as on a trusted
reference? `check_fidelity` trains the target (trajectory.py), takes the reference and honest
runs (trained here or shared by the caller), and has the judge (harness.results.fidelity_judge:
pure, beside the stored models, so that reports re-judge too) compare them against the bands
of harness.results.fidelity; the isolation jobs run one check, or one trusted run, in a worker
process.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from backends.base import DTYPES, Backend
from backends.registry import get_backend
from harness.errors import BenchError, describe_exception
from harness.fidelity.trajectory import (
    Baseline,
    Trajectory,
    honest_name,
    honest_trajectory,
    max_abs_difference,
    parse_reference,
    record_routing,
    resolved_params,
    train_baseline,
    train_trajectory,
)
from harness.measurement.guard import never_raises
from harness.results.fidelity import (
    COMPARE_STEPS,
    DETERMINISM_STEPS,
    TOLERANCES,
    BandSource,
    FidelityBand,
    FidelityResult,
    fidelity_steps,
)
from harness.results.fidelity_judge import judge_trajectories
from workloads.base import Workload
from workloads.registry import get_workload


class FidelitySpec(BaseModel):
    """One fidelity check as plain data (sent to a worker process as JSON)."""

    backend: str
    workload: str
    dtype: str
    preset: str
    steps: int | None = None
    reference: str = "cpu:fp32"
    seed: int = 0
    batch: int | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    determinism: bool = True
    note: str = ""
    band: BandSource = "measured"
    baseline: Baseline | None = None
    """The reference and honest runs when the suite already trained them (shared)."""


def check_fidelity(
    backend: Backend | str,
    workload: Workload | str,
    dtype: str,
    preset: str,
    *,
    steps: int | None = None,
    reference: str = "cpu:fp32",
    seed: int = 0,
    batch: int | None = None,
    params: dict[str, Any] | None = None,
    determinism: bool = True,
    note: str = "",
    band: BandSource = "measured",
    baseline: Baseline | None = None,
) -> FidelityResult:
    """Train on the target and on the reference and compare; see the module docstring.

    `band`: `measured` judges against bands from the honest low-precision run (the table
    where it has no finite compared window), `table` against the fixed TOLERANCES.
    `baseline`: the reference (and honest) runs when already trained for the same workload,
    preset, parameters, seed, steps and reference (shared between checks); trained here
    otherwise. `params` overrides the preset's parameters (already typed). Raises BenchError
    for a bad reference or dtype name; everything that goes wrong while training is a result."""
    parse_reference(reference)
    target = get_backend(backend) if isinstance(backend, str) else backend
    model = get_workload(workload) if isinstance(workload, str) else workload
    if dtype not in DTYPES:
        raise BenchError(f"unknown dtype '{dtype}'; choose from: {', '.join(DTYPES)}.")
    full = resolved_params(model, preset, params, batch)
    n = fidelity_steps(preset, steps)
    tolerance = TOLERANCES.get(dtype, TOLERANCES["fp32"])
    result = FidelityResult(
        workload=model.name,
        workload_version=model.version,
        backend=target.name,
        dtype=dtype,
        preset=preset,
        batch=full["batch"],
        params={k: v for k, v in full.items() if k != "batch"},
        steps=n,
        reference=reference,
        seed=seed,
        note=note,
        tolerance=tolerance,
        verdict="skipped",
    )
    if not target.supports(DTYPES[dtype]):
        result.reasons = [f"backend '{target.name}' does not support {dtype}"]
        return result

    first = train_trajectory(target, model, dtype, preset, full, seed, n)
    if not first.supported:
        result.reasons = [f"workload '{model.name}' has no fidelity step"]
        return result
    if baseline is None:
        baseline = train_baseline(model, dtype, preset, full, seed, n, reference, band)
    ref, honest = baseline.reference, baseline.honest
    result.target_loss, result.target_grad_norm = first.loss, first.grad_norm
    result.reference_loss, result.reference_grad_norm = ref.loss, ref.grad_norm
    result.target_group_grad_norm = first.group_grad_norm
    result.reference_group_grad_norm = ref.group_grad_norm
    result.first_nonfinite_step = first.first_nonfinite
    result.reference_first_nonfinite_step = ref.first_nonfinite
    if determinism:
        second = train_trajectory(
            target, model, dtype, preset, full, seed, min(n, DETERMINISM_STEPS)
        )
        result.determinism_steps = len(second.loss)
        result.deterministic, result.determinism_max_abs_diff = max_abs_difference(first, second)
    # Steps are compared one to one in a leading window: later, tiny differences grow
    # chaotically (docs/fidelity.md), and a step the fp16 loss scaler skipped (on the target
    # or the honest run) shifts the trajectory. The whole run is judged by its final loss.
    honest_skips = honest.skipped_steps[:1] if honest is not None and band == "measured" else []
    compared = min([*first.skipped_steps[:1], *honest_skips, len(first.loss), COMPARE_STEPS])
    result.compared_steps = compared
    result.skipped_steps = first.skipped_steps
    record_routing(result, first, ref)
    usable = (
        band == "measured"
        and honest is not None
        and honest.first_nonfinite is None
        and len(honest.loss) >= compared
    )
    if usable and honest is not None:
        result.honest_loss, result.honest_grad_norm = honest.loss, honest.grad_norm
        result.honest_group_grad_norm = honest.group_grad_norm
        name = baseline.honest_name or honest_name(dtype, reference)
        result.band = FidelityBand(source="measured", honest=name)
    if dtype == "fp32":
        result.fp32_downcasts = target.fp32_downcasts()
    return judge_trajectories(result)


def run_fidelity_spec(spec: FidelitySpec) -> FidelityResult:
    """`check_fidelity` for a spec; never raises (harness.measurement.guard): any exception
    is a failed result naming it."""

    def run() -> FidelityResult:
        return check_fidelity(
            spec.backend,
            spec.workload,
            spec.dtype,
            spec.preset,
            steps=spec.steps,
            reference=spec.reference,
            seed=spec.seed,
            batch=spec.batch,
            params=spec.params,
            determinism=spec.determinism,
            note=spec.note,
            band=spec.band,
            baseline=spec.baseline,
        )

    return never_raises(run, lambda _kind, message: failed_fidelity(spec, message))


def failed_fidelity(spec: FidelitySpec, error: str) -> FidelityResult:
    """A failed result for a check that could not complete (exception, crash, timeout)."""
    return FidelityResult(
        workload=spec.workload,
        backend=spec.backend,
        dtype=spec.dtype,
        preset=spec.preset,
        batch=spec.batch,
        steps=spec.steps or fidelity_steps(spec.preset),
        reference=spec.reference,
        seed=spec.seed,
        note=spec.note,
        verdict="fail",
        reasons=[f"the fidelity check did not complete: {error}"],
        error=error,
    )


def fidelity_job(payload: str) -> str:
    """The isolation job of one check: a FidelitySpec as JSON in, its FidelityResult out."""
    return run_fidelity_spec(FidelitySpec.model_validate_json(payload)).model_dump_json()


class TrajectorySpec(BaseModel):
    """One trusted run of a check's baseline as plain data: the reference (`dtype` None) or
    the honest run in `dtype` on the reference device."""

    workload: str
    preset: str
    steps: int
    reference: str = "cpu:fp32"
    seed: int = 0
    batch: int | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    dtype: str | None = None


class TrajectoryAnswer(BaseModel):
    """A trained trajectory, or why it could not be trained."""

    trajectory: Trajectory | None = None
    error: str | None = None


def trajectory_job(payload: str) -> str:
    """The isolation job of one baseline run: a TrajectorySpec as JSON in, a TrajectoryAnswer
    out; never raises (an exception is the answer's error)."""
    spec = TrajectorySpec.model_validate_json(payload)
    try:
        model = get_workload(spec.workload)
        full = resolved_params(model, spec.preset, spec.params, spec.batch)
        if spec.dtype is None:
            ref_backend, ref_dtype = parse_reference(spec.reference)
            trajectory = train_trajectory(
                ref_backend, model, ref_dtype, spec.preset, full, spec.seed, spec.steps
            )
        else:
            trajectory = honest_trajectory(
                model, spec.dtype, spec.preset, full, spec.seed, spec.steps, spec.reference
            )
    except Exception as exc:
        return TrajectoryAnswer(error=describe_exception(exc)).model_dump_json()
    return TrajectoryAnswer(trajectory=trajectory).model_dump_json()
