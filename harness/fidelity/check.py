"""Fidelity: does training on a backend follow the same trajectory as on a trusted reference?

`check_fidelity` trains one workload for N steps on the target (backend, dtype) and on a
reference (default CPU fp32; CPU fp64 on request) from identical initial weights (built on the
CPU under one seed by BuildContext.materialize) and identical batches of real data
(`Instance.fidelity_step(index)`), then compares loss curves and gradient norms against
dtype-dependent tolerances derived in docs/fidelity.md.
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch
from pydantic import BaseModel, Field

from backends.base import DTYPES, Backend
from backends.cpu import CPUBackend
from backends.registry import get_backend
from harness.errors import BenchError, describe_exception
from harness.results.fidelity import FidelityResult, FidelityTolerance
from workloads.base import BuildContext, Routing, Workload
from workloads.registry import get_workload

FIDELITY_WORKLOADS: tuple[str, ...] = ("gpt", "llama", "moe", "mlp", "convnet")
"""Workloads whose training a run checks for fidelity (those registered here)."""

FIDELITY_STEPS: dict[str, int] = {"tiny": 20, "small": 100}
"""Training steps per fidelity preset; a `base` run checks fidelity at `small`."""

REFERENCES: tuple[str, ...] = ("cpu:fp32", "cpu:fp64")

MAX_SKIPPED_FRACTION = 0.25
"""fp16 steps skipped by the loss scaler (gradient overflow) beyond this fraction warn."""

COMPARE_STEPS = 20
"""Leading steps compared one to one against the tolerances (the whole run: final loss)."""

DETERMINISM_STEPS = 20
"""The determinism check repeats at most this many steps on the target (bounds its cost)."""

TOLERANCES: dict[str, FidelityTolerance] = {
    # Derived from measured drift over the compared window (python -m harness.fidelity.drift;
    # numbers and reasoning in docs/fidelity.md). Largest drift of a correct CPU run, as a
    # fraction of the initial loss / the median gradient norm: fp32 vs fp64 3e-5 / 3.3e-4,
    # bf16 vs fp32 0.061 / 0.216, fp16 vs fp32 0.019 / 0.127 (all convnet). pass is 10x
    # that for fp32 (other devices sum in other orders) and 2.5x for bf16/fp16; warn is 2-10x
    # pass.
    # Routing (MoE): largest fraction of tokens with another top-k expert set in a compared
    # step; drift measured on moe tiny and small in docs/fidelity.md (fp32 vs fp32/fp64: 0;
    # bf16 and fp16 vs fp32: up to 0.042). fp32 pass allows a near-tie flip per hundred
    # tokens; bf16/fp16 pass is 2.5x the drift, warn 2x pass.
    "fp32": FidelityTolerance(
        loss_pass=3e-4,
        loss_warn=3e-3,
        grad_norm_pass=3e-3,
        grad_norm_warn=3e-2,
        routing_pass=0.01,
        routing_warn=0.05,
    ),
    "bf16": FidelityTolerance(
        loss_pass=0.15,
        loss_warn=0.3,
        grad_norm_pass=0.5,
        grad_norm_warn=1.0,
        routing_pass=0.1,
        routing_warn=0.2,
    ),
    "fp16": FidelityTolerance(
        loss_pass=0.05,
        loss_warn=0.15,
        grad_norm_pass=0.3,
        grad_norm_warn=0.6,
        routing_pass=0.1,
        routing_warn=0.2,
    ),
}
TOLERANCES["fp64"] = TOLERANCES["fp32"]


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


class _ReferenceFP64(CPUBackend):
    """The CPU running models in float64: parameters and buffers converted, floating inputs
    cast on entry. Weights are still built in fp32 under the seed, then upcast exactly."""

    name = "cpu-fp64-reference"

    def prepare(self, model: torch.nn.Module) -> torch.nn.Module:
        model = model.to(torch.float64)

        def cast_inputs(
            module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
        ) -> tuple[tuple[Any, ...], dict[str, Any]]:
            return (
                tuple(_to_fp64(a) for a in args),
                {k: _to_fp64(v) for k, v in kwargs.items()},
            )

        model.register_forward_pre_hook(cast_inputs, with_kwargs=True)
        return model


def _to_fp64(value: Any) -> Any:
    if isinstance(value, torch.Tensor) and torch.is_floating_point(value):
        return value.to(torch.float64)
    return value


def parse_reference(reference: str) -> tuple[Backend, str]:
    """The reference backend and the dtype name its BuildContext uses; BenchError naming the
    choices for anything but cpu:fp32 and cpu:fp64."""
    if reference not in REFERENCES:
        raise BenchError(
            f"unknown --reference '{reference}'; choose from: {', '.join(REFERENCES)}."
        )
    if reference == "cpu:fp64":
        return _ReferenceFP64(), "fp32"
    return CPUBackend(), "fp32"


def fidelity_steps(preset: str, steps: int | None = None) -> int:
    """Steps for a preset (tiny 20, small 100, anything larger 100) unless given."""
    if steps is not None:
        if steps < 1:
            raise BenchError(f"fidelity steps must be >= 1, got {steps}.")
        return steps
    return FIDELITY_STEPS.get(preset, FIDELITY_STEPS["small"])


class Trajectory(BaseModel):
    """Per-step losses and gradient norms of one training run (None where not finite)."""

    loss: list[float | None] = Field(default_factory=list)
    grad_norm: list[float | None] = Field(default_factory=list)
    first_nonfinite: int | None = None
    skipped_steps: list[int] = Field(default_factory=list)
    supported: bool = True
    routing: list[Routing] = Field(default_factory=list)
    """Mixture-of-experts workloads: each step's routing decisions (not stored)."""


def train_trajectory(
    backend: Backend,
    workload: Workload,
    dtype: str,
    preset: str,
    params: dict[str, Any],
    seed: int,
    steps: int,
) -> Trajectory:
    """Train `steps` steps of `workload` on `backend` from the seed's weights, batch i at step i.

    Stops at the first NaN/Inf loss or gradient norm, except that in fp16 a finite loss with
    an overflowing gradient is a step the loss scaler skipped by design (workloads.training.
    Trainer uses a GradScaler): it is recorded in `skipped_steps` and training goes on.
    `supported` is False when the workload has no fidelity step."""
    ctx = BuildContext.seeded(
        backend,
        dtype_name=dtype,
        batch_size=params["batch"],
        preset=preset,
        params=params,
        seed=seed,
    )
    instance = workload.build(ctx)
    out = Trajectory()
    for index in range(steps):
        step = instance.fidelity_step(index)
        if step is None:
            return Trajectory(supported=False)
        loss_ok, norm_ok = math.isfinite(step.loss), math.isfinite(step.grad_norm)
        out.loss.append(step.loss if loss_ok else None)
        out.grad_norm.append(step.grad_norm if norm_ok else None)
        if step.routing is not None:
            out.routing.append(step.routing)
        if loss_ok and not norm_ok and dtype == "fp16":
            out.skipped_steps.append(index)
        elif not (loss_ok and norm_ok):
            out.first_nonfinite = index
            break
    return out


def max_scaled_deviation(
    target: list[float | None], reference: list[float | None], scale: float | None
) -> float:
    """Largest |t - r| / scale over the steps where both are finite (0.0 when none).

    Dividing by a fixed scale of the run (the reference's initial loss, its median gradient
    norm), not by each step's own value, keeps the measure meaningful when the loss
    approaches zero."""
    if not scale:
        return 0.0
    diffs = [
        abs(t - r)
        for t, r in zip(target, reference, strict=False)
        if t is not None and r is not None
    ]
    return max(diffs, default=0.0) / abs(scale)


def deviation_scales(
    loss: list[float | None], grad_norm: list[float | None]
) -> tuple[float | None, float | None]:
    """The reference's initial loss and its median gradient norm (None when unknown)."""
    norms = sorted(abs(g) for g in grad_norm if g is not None)
    return (loss[0] if loss else None), (norms[len(norms) // 2] if norms else None)


def final_losses(
    target: list[float | None], reference: list[float | None]
) -> tuple[float, float] | None:
    """Mean target and mean reference loss on the last tenth of the steps (at least one)
    where both are finite: robust to the noise of one batch."""
    pairs = [
        (t, r) for t, r in zip(target, reference, strict=False) if t is not None and r is not None
    ]
    if not pairs:
        return None
    tail = pairs[-max(1, len(pairs) // 10) :]
    return sum(t for t, _ in tail) / len(tail), sum(r for _, r in tail) / len(tail)


def routing_match(target: Routing, reference: Routing) -> float:
    """The fraction of (layer, token) pairs whose top-k expert set is the same in both."""
    k = target.top_k
    a = torch.tensor(target.experts).reshape(-1, k)
    b = torch.tensor(reference.experts).reshape(-1, k)
    if a.shape != b.shape or not a.numel():
        return 0.0
    return float((a == b).all(dim=-1).float().mean())


def expert_load(routing: Routing) -> list[int]:
    """Token slots routed to each expert, summed over the MoE layers."""
    ids = torch.tensor(routing.experts, dtype=torch.long).reshape(-1)
    return [int(n) for n in torch.bincount(ids, minlength=routing.n_expert)]


def compare_routing(result: FidelityResult, target: Trajectory, reference: Trajectory) -> None:
    """Fill the routing fields of `result` from the two runs' routing (MoE workloads only):
    match per step, expert loads, and the largest mismatch over the compared steps."""
    if not target.routing or not reference.routing:
        return
    result.routing_match = [
        routing_match(t, r) for t, r in zip(target.routing, reference.routing, strict=False)
    ]
    result.target_expert_load = [expert_load(r) for r in target.routing]
    result.reference_expert_load = [expert_load(r) for r in reference.routing]
    compared = result.routing_match[: result.compared_steps or len(result.routing_match)]
    if compared:
        result.max_routing_mismatch = 1.0 - min(compared)


def _max_abs_difference(a: Trajectory, b: Trajectory) -> tuple[bool, float]:
    """Whether two runs are bitwise equal over the steps of the shorter one, and their largest
    absolute difference there."""
    n = min(len(a.loss), len(b.loss))
    pairs = list(zip(a.loss[:n] + a.grad_norm[:n], b.loss[:n] + b.grad_norm[:n], strict=True))
    equal = all(x == y for x, y in pairs)
    diffs = [abs(x - y) for x, y in pairs if x is not None and y is not None]
    return equal, max(diffs, default=0.0)


def judge(result: FidelityResult, tolerance: FidelityTolerance) -> None:
    """Set `result.verdict` and `result.reasons` from its trajectories and the tolerance."""
    reasons: list[str] = []
    verdict = "pass"

    def worse(level: str) -> None:
        nonlocal verdict
        order = ("pass", "warn", "fail")
        if order.index(level) > order.index(verdict):
            verdict = level

    if result.first_nonfinite_step is not None:
        worse("fail")
        text = f"training on the target produced NaN/Inf at step {result.first_nonfinite_step}"
        if result.reference_first_nonfinite_step is not None:
            text += f" (the reference too, at step {result.reference_first_nonfinite_step})"
        reasons.append(text)
    elif result.reference_first_nonfinite_step is not None:
        worse("warn")
        reasons.append(
            f"the reference produced NaN/Inf at step {result.reference_first_nonfinite_step}; "
            "only the steps before it are compared"
        )
    for what, value, ok, warn in (
        ("loss", result.max_rel_loss_deviation, tolerance.loss_pass, tolerance.loss_warn),
        (
            "gradient norm",
            result.max_rel_grad_norm_deviation,
            tolerance.grad_norm_pass,
            tolerance.grad_norm_warn,
        ),
    ):
        if value is None or value <= ok:
            continue
        level = "warn" if value <= warn else "fail"
        worse(level)
        limit = warn if level == "fail" else ok
        reasons.append(
            f"max {what} deviation {value:.3g} exceeds the {result.dtype} "
            f"{'warn' if level == 'fail' else 'pass'} tolerance {limit:g}"
        )
    mismatch = result.max_routing_mismatch
    ok, warn = tolerance.routing_pass, tolerance.routing_warn
    if mismatch is not None and ok is not None and mismatch > ok:
        level = "fail" if warn is not None and mismatch > warn else "warn"
        worse(level)
        limit = warn if level == "fail" else ok
        reasons.append(
            f"routing diverges: in a compared step {mismatch:.3g} of the tokens chose a "
            f"different top-k expert set than the reference, beyond the {result.dtype} "
            f"{'warn' if level == 'fail' else 'pass'} tolerance {limit:g}"
        )
    final = result.final_loss_deviation
    if final is not None and final > tolerance.loss_warn:
        worse("fail")
        reasons.append(
            f"the final loss differs by {final:.3g} of the initial loss (ratio "
            f"{result.final_loss_ratio:.4g}), more than the {result.dtype} warn tolerance "
            f"{tolerance.loss_warn:g}"
        )
    skipped = len(result.skipped_steps)
    if skipped > MAX_SKIPPED_FRACTION * result.steps:
        worse("warn")
        reasons.append(
            f"the fp16 loss scaler skipped {skipped} of {result.steps} steps (overflowing "
            f"gradients); more than {MAX_SKIPPED_FRACTION:.0%}"
        )
    if (
        result.deterministic is False
        and result.determinism_max_abs_diff is not None
        and result.target_loss
        and result.target_loss[0] is not None
        and result.determinism_max_abs_diff > tolerance.loss_pass * abs(result.target_loss[0])
    ):
        worse("warn")
        reasons.append(
            f"two target runs differ by up to {result.determinism_max_abs_diff:.3g} "
            "(more than the loss pass tolerance)"
        )
    result.verdict = verdict  # type: ignore[assignment]
    result.reasons = reasons


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
) -> FidelityResult:
    """Train on the target and on the reference and compare; see the module docstring.

    `params` overrides the preset's parameters (already typed). Raises BenchError for a bad
    reference or dtype name; everything that goes wrong while training is a result."""
    ref_backend, ref_dtype = parse_reference(reference)
    target = get_backend(backend) if isinstance(backend, str) else backend
    model = get_workload(workload) if isinstance(workload, str) else workload
    if dtype not in DTYPES:
        raise BenchError(f"unknown dtype '{dtype}'; choose from: {', '.join(DTYPES)}.")
    full = {**model.resolve_params(preset, {}), **(params or {})}  # names bad presets
    if batch is not None:
        full["batch"] = batch
    model.validate_params(full)
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

    def run(on: Backend, dtype_name: str) -> Trajectory:
        return train_trajectory(on, model, dtype_name, preset, full, seed, n)

    first = run(target, dtype)
    if not first.supported:
        result.reasons = [f"workload '{model.name}' has no fidelity step"]
        return result
    ref = run(ref_backend, ref_dtype)
    result.target_loss, result.target_grad_norm = first.loss, first.grad_norm
    result.reference_loss, result.reference_grad_norm = ref.loss, ref.grad_norm
    result.first_nonfinite_step = first.first_nonfinite
    result.reference_first_nonfinite_step = ref.first_nonfinite
    if determinism:
        second = train_trajectory(
            target, model, dtype, preset, full, seed, min(n, DETERMINISM_STEPS)
        )
        result.determinism_steps = len(second.loss)
        result.deterministic, result.determinism_max_abs_diff = _max_abs_difference(first, second)
    # Steps are compared one to one in a leading window: later, tiny differences grow
    # chaotically (docs/fidelity.md), and a step the fp16 loss scaler skipped shifts the
    # trajectory. The whole run is judged by its final loss.
    compared = min([*first.skipped_steps[:1], len(first.loss), COMPARE_STEPS])
    result.compared_steps = compared
    loss_scale, norm_scale = deviation_scales(ref.loss, ref.grad_norm)
    result.max_rel_loss_deviation = max_scaled_deviation(
        first.loss[:compared], ref.loss[:compared], loss_scale
    )
    result.max_rel_grad_norm_deviation = max_scaled_deviation(
        first.grad_norm[:compared], ref.grad_norm[:compared], norm_scale
    )
    result.skipped_steps = first.skipped_steps
    compare_routing(result, first, ref)
    final = final_losses(first.loss, ref.loss)
    if final is not None:
        result.final_loss_ratio = final[0] / final[1] if final[1] else None
        if loss_scale:
            result.final_loss_deviation = abs(final[0] - final[1]) / abs(loss_scale)
    judge(result, tolerance)
    if result.verdict == "fail" and dtype == "fp32":
        downcasts = target.fp32_downcasts()
        if downcasts:
            result.reasons.append(
                f"fp32 matmuls/convolutions on this device ran in reduced precision "
                f"({', '.join(downcasts)}): turn that off to check true fp32"
            )
    return result


def run_fidelity_spec(spec: FidelitySpec) -> FidelityResult:
    """`check_fidelity` for a spec; never raises: any exception is a failed result."""
    start = time.perf_counter()
    try:
        result = check_fidelity(
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
        )
    except Exception as exc:
        result = failed_fidelity(spec, describe_exception(exc))
    result.duration_s = time.perf_counter() - start
    return result


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
