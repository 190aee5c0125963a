"""Fidelity: does training on a backend follow the same trajectory as on a trusted reference?

`check_fidelity` trains one workload for N steps on the target (backend, dtype) and on a
reference (default CPU fp32; CPU fp64 on request) from identical initial weights (built on the
CPU under one seed by BuildContext.materialize) and identical batches of real data
(`Instance.fidelity_step(index)`), then compares loss curves and gradient norms against
dtype-dependent tolerances derived in docs/fidelity.md.
"""

from __future__ import annotations

import functools
import math
import statistics
import time
from typing import Any, Literal

import torch
from pydantic import BaseModel, Field

from backends.base import DTYPES, Backend
from backends.cpu import CPUBackend
from backends.registry import get_backend
from harness.errors import BenchError, describe_exception
from harness.results.fidelity import FidelityBand, FidelityResult, FidelityTolerance
from harness.results.presets import PRESETS
from workloads.base import BuildContext, Routing, Workload
from workloads.registry import get_workload

FIDELITY_WORKLOADS: tuple[str, ...] = ("gpt", "llama", "moe", "mlp", "convnet")
"""Workloads whose training a run checks for fidelity (those registered here)."""

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
"""The fixed tolerances: the band only where no honest low-precision run exists."""

BAND_K = 4.0
"""Pass band = BAND_K x the honest run's drift (running max up to the step) + the floor.
Chosen from the spread of the honest drift across seeds (docs/fidelity.md)."""

WARN_FACTOR = 3.0
"""Warn band = WARN_FACTOR x the pass band; beyond it the check fails."""


class BandFloor(BaseModel):
    """The smallest pass band of a dtype (x initial loss, x median gradient norm)."""

    loss: float
    grad_norm: float


BAND_FLOORS: dict[str, BandFloor] = {
    # fp32: the old fp32 pass tolerance, 10x the worst fp32-vs-fp64 drift (other devices
    # sum in other orders). bf16/fp16: the largest drift one step of honest rounding causes
    # (step 0, any workload, seeds 0-4), and never below fp32's. docs/fidelity.md.
    "fp32": BandFloor(loss=3e-4, grad_norm=3e-3),
    "bf16": BandFloor(loss=6e-4, grad_norm=5e-3),
    "fp16": BandFloor(loss=3e-4, grad_norm=3e-3),
}
BAND_FLOORS["fp64"] = BAND_FLOORS["fp32"]

BandChoice = Literal["measured", "table"]


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
    band: BandChoice = "measured"
    baseline: Baseline | None = None
    """The reference and honest runs when the suite already trained them (shared)."""


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
        return _reference_device(_ReferenceFP64), "fp32"
    return _reference_device(CPUBackend), "fp32"


@functools.cache
def _reference_device(kind: type[CPUBackend]) -> CPUBackend:
    """One instance per reference device kind, reused by every check of the process: creating
    a CPU backend collects garbage and trims the heap (measurement hygiene), which the
    reference and honest runs of every check would otherwise pay again."""
    return kind()


def fidelity_steps(preset: str, steps: int | None = None) -> int:
    """Steps for a preset (its Preset.fidelity_steps) unless given."""
    if steps is not None:
        if steps < 1:
            raise BenchError(f"fidelity steps must be >= 1, got {steps}.")
        return steps
    return PRESETS[preset].fidelity_steps  # type: ignore[index]


class Trajectory(BaseModel):
    """Per-step losses and gradient norms of one training run (None where not finite)."""

    loss: list[float | None] = Field(default_factory=list)
    grad_norm: list[float | None] = Field(default_factory=list)
    group_grad_norm: dict[str, list[float | None]] = Field(default_factory=dict)
    """Per parameter group (workloads.training.parameter_groups), per step."""
    first_nonfinite: int | None = None
    skipped_steps: list[int] = Field(default_factory=list)
    supported: bool = True
    routing: list[Routing] = Field(default_factory=list)
    """Mixture-of-experts workloads: each step's routing decisions (not stored)."""


class Baseline(BaseModel):
    """The trusted runs a check compares against, shareable between checks: the reference,
    and the honest low-precision run (the target dtype on the reference device; None where
    there is none)."""

    reference: Trajectory
    honest: Trajectory | None = None
    honest_name: str | None = None


FidelitySpec.model_rebuild()


def honest_name(dtype: str, reference: str) -> str:
    """The honest run's name, e.g. `cpu:bf16`."""
    return f"{reference.partition(':')[0]}:{dtype}"


def honest_is_reference(dtype: str, reference: str) -> bool:
    """Whether the honest run is the reference run itself (fp32 against cpu:fp32)."""
    return honest_name(dtype, reference) == reference


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
        for group, value in step.group_grad_norms.items():
            out.group_grad_norm.setdefault(group, [None] * index).append(
                value if math.isfinite(value) else None
            )
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


def step_deviations(
    target: list[float | None], reference: list[float | None], scale: float | None, steps: int
) -> list[float | None]:
    """|t - r| / scale at each of the first `steps` steps (None where either is not finite,
    or the scale is unknown)."""
    out: list[float | None] = []
    for i in range(steps):
        t = target[i] if i < len(target) else None
        r = reference[i] if i < len(reference) else None
        out.append(abs(t - r) / abs(scale) if t is not None and r is not None and scale else None)
    return out


def running_max(values: list[float | None]) -> list[float]:
    """The largest value up to each step (0.0 before the first known one): drift accumulates,
    so a step where the honest run happens to cross the reference does not narrow the band."""
    out: list[float] = []
    top = 0.0
    for value in values:
        top = max(top, value or 0.0)
        out.append(top)
    return out


def median_abs(values: list[float | None]) -> float | None:
    """The median of the known |values| (the upper one of an even count); None if none."""
    known = sorted(abs(v) for v in values if v is not None)
    return known[len(known) // 2] if known else None


def measured_band(
    dtype: str,
    honest: str,
    loss_drift: list[float | None],
    grad_norm_drift: list[float | None],
    group_drift: dict[str, list[float | None]],
    final_drift: float | None,
) -> FidelityBand:
    """The per-step bands from the honest run's per-step deviations (see FidelityBand)."""
    floor = BAND_FLOORS.get(dtype, BAND_FLOORS["fp32"])

    def bands(drift: list[float | None], minimum: float) -> tuple[list[float], list[float]]:
        passing = [BAND_K * d + minimum for d in running_max(drift)]
        return passing, [WARN_FACTOR * p for p in passing]

    loss_pass, loss_warn = bands(loss_drift, floor.loss)
    norm_pass, norm_warn = bands(grad_norm_drift, floor.grad_norm)
    groups = {g: bands(d, floor.grad_norm) for g, d in group_drift.items()}
    loss_top = max(running_max(loss_drift), default=0.0)
    return FidelityBand(
        source="measured",
        honest=honest,
        k=BAND_K,
        warn_factor=WARN_FACTOR,
        loss_floor=floor.loss,
        grad_norm_floor=floor.grad_norm,
        loss_pass=loss_pass,
        loss_warn=loss_warn,
        grad_norm_pass=norm_pass,
        grad_norm_warn=norm_warn,
        group_grad_norm_pass={g: b[0] for g, b in groups.items()},
        group_grad_norm_warn={g: b[1] for g, b in groups.items()},
        final_loss_warn=WARN_FACTOR * (BAND_K * max(final_drift or 0.0, loss_top) + floor.loss),
    )


def table_band(tolerance: FidelityTolerance, steps: int, groups: list[str]) -> FidelityBand:
    """The fixed tolerances as a band constant over `steps` steps."""
    return FidelityBand(
        source="table",
        loss_pass=[tolerance.loss_pass] * steps,
        loss_warn=[tolerance.loss_warn] * steps,
        grad_norm_pass=[tolerance.grad_norm_pass] * steps,
        grad_norm_warn=[tolerance.grad_norm_warn] * steps,
        group_grad_norm_pass={g: [tolerance.grad_norm_pass] * steps for g in groups},
        group_grad_norm_warn={g: [tolerance.grad_norm_warn] * steps for g in groups},
        final_loss_warn=tolerance.loss_warn,
    )


class _Breach(BaseModel):
    """The worst step of one compared quantity against its band."""

    level: Literal["warn", "fail"]
    step: int
    first: int
    deviation: float
    limit: float
    pass_limit: float


def _breach(
    deviations: list[float | None], passing: list[float], warning: list[float]
) -> _Breach | None:
    """Where deviations leave the band: the level (fail beyond the warn band anywhere), the
    worst step (largest deviation / limit), the first step beyond the pass band."""
    outside = [
        i
        for i, (d, p) in enumerate(zip(deviations, passing, strict=False))
        if d is not None and d > p
    ]
    if not outside:
        return None
    failing = [i for i in outside if deviations[i] > warning[i]]  # type: ignore[operator]
    level: Literal["warn", "fail"] = "fail" if failing else "warn"
    limits = warning if failing else passing
    worst = max(failing or outside, key=lambda i: deviations[i] / limits[i])  # type: ignore[operator]
    return _Breach(
        level=level,
        step=worst,
        first=outside[0],
        deviation=deviations[worst],  # type: ignore[arg-type]
        limit=limits[worst],
        pass_limit=passing[worst],
    )


def _band_words(
    result: FidelityResult, breach: _Breach, drift: list[float], floor: float | None
) -> str:
    """'the bf16 warn band 0.031 (3 x pass band 0.0104 = 4 x honest cpu:bf16 drift ... )'."""
    band = result.band
    assert band is not None
    word = "warn" if breach.level == "fail" else "pass"
    if band.source == "table":
        return f"the {result.dtype} {word} tolerance {breach.limit:.3g} (fixed table)"
    honest = drift[breach.step] if breach.step < len(drift) else 0.0
    passing = f"{band.k:g} x honest {band.honest} drift {honest:.3g} + floor {floor or 0:g}"
    if breach.level == "fail":
        return (
            f"the {result.dtype} warn band {breach.limit:.3g} ({band.warn_factor:g} x pass band "
            f"{breach.pass_limit:.3g} = {passing})"
        )
    return f"the {result.dtype} pass band {breach.limit:.3g} ({passing})"


def _direction(target: list[float | None], reference: list[float | None], start: int) -> str:
    """'25% high' / '12% low': the median relative change from `start` on."""
    ratios = [
        t / r - 1.0
        for t, r in list(zip(target, reference, strict=False))[start:]
        if t is not None and r
    ]
    if not ratios:
        return "off"
    change = statistics.median(ratios) * 100
    size = f"{abs(change):.0f}%" if abs(change) >= 1 else f"{abs(change):.2g}%"
    return f"{size} {'high' if change > 0 else 'low'}"


def judge(result: FidelityResult, tolerance: FidelityTolerance | None = None) -> None:
    """Set `result.verdict` and `result.reasons` from its trajectories and `result.band`
    (the table band of `tolerance`, or of the dtype, when the result has none)."""
    tolerance = tolerance or TOLERANCES.get(result.dtype, TOLERANCES["fp32"])
    compared = result.compared_steps or 0
    if result.band is None:
        result.band = table_band(tolerance, compared, list(result.target_group_grad_norm))
    band = result.band
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
    loss_scale, norm_scale = deviation_scales(result.reference_loss, result.reference_grad_norm)
    honest = band.source == "measured"
    for what, target, reference, scale, floor, drift_of, passing, warning in (
        (
            "loss", result.target_loss, result.reference_loss, loss_scale, band.loss_floor,
            result.honest_loss, band.loss_pass, band.loss_warn,
        ),
        (
            "gradient norm", result.target_grad_norm, result.reference_grad_norm, norm_scale,
            band.grad_norm_floor, result.honest_grad_norm, band.grad_norm_pass,
            band.grad_norm_warn,
        ),
    ):  # fmt: skip
        deviations = step_deviations(target, reference, scale, compared)
        breach = _breach(deviations, passing, warning)
        if breach is None:
            continue
        worse(breach.level)
        drift = running_max(step_deviations(drift_of, reference, scale, compared)) if honest else []
        since = f" (outside the pass band from step {breach.first})" * (breach.first < breach.step)
        reasons.append(
            f"{what} deviation {breach.deviation:.3g} at step {breach.step} exceeds "
            + _band_words(result, breach, drift, floor)
            + since
        )
    reasons.extend(_group_reasons(result, worse))
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
    if final is not None and band.final_loss_warn is not None and final > band.final_loss_warn:
        worse("fail")
        reasons.append(
            f"the final loss differs by {final:.3g} of the initial loss (ratio "
            f"{result.final_loss_ratio:.4g}), more than the {result.dtype} "
            + (
                f"warn tolerance {band.final_loss_warn:g}"
                if band.source == "table"
                else f"final-loss band {band.final_loss_warn:.3g} ({band.warn_factor:g} x ("
                f"{band.k:g} x honest drift + floor {band.loss_floor:g}))"
            )
        )
    skipped = len(result.skipped_steps)
    if skipped > MAX_SKIPPED_FRACTION * result.steps:
        worse("warn")
        reasons.append(
            f"the fp16 loss scaler skipped {skipped} of {result.steps} steps (overflowing "
            f"gradients); more than {MAX_SKIPPED_FRACTION:.0%}"
        )
    repeat_limit = max(band.loss_pass, default=tolerance.loss_pass)
    if (
        result.deterministic is False
        and result.determinism_max_abs_diff is not None
        and result.target_loss
        and result.target_loss[0] is not None
        and result.determinism_max_abs_diff > repeat_limit * abs(result.target_loss[0])
    ):
        worse("warn")
        reasons.append(
            f"two target runs differ by up to {result.determinism_max_abs_diff:.3g} "
            "(more than the loss pass band)"
        )
    result.verdict = verdict  # type: ignore[assignment]
    result.reasons = reasons


def _group_reasons(result: FidelityResult, worse: Any) -> list[str]:
    """Reasons for the parameter groups whose gradient norms leave their band, naming the
    group, the direction and the first step ('attention gradients 25% high from step 0');
    one reason when every group does (the fault is not confined to one kind of layer)."""
    band = result.band
    assert band is not None
    compared = result.compared_steps or 0
    found: list[tuple[str, _Breach, str, list[float]]] = []
    for group, target in result.target_group_grad_norm.items():
        reference = result.reference_group_grad_norm.get(group, [])
        if group not in band.group_grad_norm_pass:
            continue
        scale = median_abs(reference)
        breach = _breach(
            step_deviations(target, reference, scale, compared),
            band.group_grad_norm_pass[group],
            band.group_grad_norm_warn[group],
        )
        if breach is None:
            continue
        worse(breach.level)
        honest = result.honest_group_grad_norm.get(group, [])
        drift = running_max(step_deviations(honest, reference, scale, compared))
        found.append((group, breach, _direction(target, reference, breach.first), drift))
    if not found:
        return []
    if len(found) == len(band.group_grad_norm_pass) > 1:
        first = min(b.first for _, b, _, _ in found)
        parts = ", ".join(f"{g} {d}" for g, _, d, _ in found)
        worst = max(found, key=lambda f: f[1].deviation / f[1].limit)
        return [
            f"gradients of every parameter group are off from step {first} ({parts}); worst "
            f"{worst[0]}: deviation {worst[1].deviation:.3g} at step {worst[1].step} exceeds "
            + _band_words(result, worst[1], worst[3], band.grad_norm_floor)
        ]
    return [
        f"{group} gradients {direction} from step {breach.first}: deviation "
        f"{breach.deviation:.3g} at step {breach.step} exceeds "
        + _band_words(result, breach, drift, band.grad_norm_floor)
        for group, breach, direction, drift in found
    ]


def resolved_params(
    model: Workload, preset: str, params: dict[str, Any] | None, batch: int | None
) -> dict[str, Any]:
    """The preset's parameters with `params` (already typed) and `batch` over them; raises
    WorkloadError for a bad preset or parameter."""
    full = {**model.resolve_params(preset, {}), **(params or {})}
    if batch is not None:
        full["batch"] = batch
    model.validate_params(full)
    return full


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
    band: BandChoice = "measured",
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
        result.deterministic, result.determinism_max_abs_diff = _max_abs_difference(first, second)
    # Steps are compared one to one in a leading window: later, tiny differences grow
    # chaotically (docs/fidelity.md), and a step the fp16 loss scaler skipped (on the target
    # or the honest run) shifts the trajectory. The whole run is judged by its final loss.
    honest_skips = honest.skipped_steps[:1] if honest is not None and band == "measured" else []
    compared = min([*first.skipped_steps[:1], *honest_skips, len(first.loss), COMPARE_STEPS])
    result.compared_steps = compared
    loss_scale, norm_scale = deviation_scales(ref.loss, ref.grad_norm)
    result.max_rel_loss_deviation = max_scaled_deviation(
        first.loss[:compared], ref.loss[:compared], loss_scale
    )
    result.max_rel_grad_norm_deviation = max_scaled_deviation(
        first.grad_norm[:compared], ref.grad_norm[:compared], norm_scale
    )
    result.max_rel_group_grad_norm_deviation = {
        group: max_scaled_deviation(
            values[:compared],
            ref.group_grad_norm.get(group, [])[:compared],
            median_abs(ref.group_grad_norm.get(group, [])),
        )
        for group, values in first.group_grad_norm.items()
    }
    result.skipped_steps = first.skipped_steps
    compare_routing(result, first, ref)
    final = final_losses(first.loss, ref.loss)
    if final is not None:
        result.final_loss_ratio = final[0] / final[1] if final[1] else None
        if loss_scale:
            result.final_loss_deviation = abs(final[0] - final[1]) / abs(loss_scale)
    usable = (
        band == "measured"
        and honest is not None
        and honest.first_nonfinite is None
        and len(honest.loss) >= compared
    )
    if usable and honest is not None:
        _apply_honest(result, honest, baseline.honest_name or honest_name(dtype, reference))
    judge(result, tolerance)
    if result.verdict == "fail" and dtype == "fp32":
        downcasts = target.fp32_downcasts()
        if downcasts:
            result.reasons.append(
                f"fp32 matmuls/convolutions on this device ran in reduced precision "
                f"({', '.join(downcasts)}): turn that off to check true fp32"
            )
    return result


def _apply_honest(result: FidelityResult, honest: Trajectory, name: str) -> None:
    """Store the honest run, its drift and the measured band on `result`."""
    compared = result.compared_steps or 0
    ref_loss, ref_norm = result.reference_loss, result.reference_grad_norm
    loss_scale, norm_scale = deviation_scales(ref_loss, ref_norm)
    result.honest_loss, result.honest_grad_norm = honest.loss, honest.grad_norm
    result.honest_group_grad_norm = honest.group_grad_norm
    loss_drift = step_deviations(honest.loss, ref_loss, loss_scale, compared)
    norm_drift = step_deviations(honest.grad_norm, ref_norm, norm_scale, compared)
    group_drift = {
        group: step_deviations(
            honest.group_grad_norm.get(group, []),
            reference,
            median_abs(reference),
            compared,
        )
        for group, reference in result.reference_group_grad_norm.items()
    }
    result.honest_loss_drift = max(running_max(loss_drift), default=0.0)
    result.honest_grad_norm_drift = max(running_max(norm_drift), default=0.0)
    result.honest_group_grad_norm_drift = {
        g: max(running_max(d), default=0.0) for g, d in group_drift.items()
    }
    final = final_losses(honest.loss, ref_loss)
    if final is not None and loss_scale:
        result.honest_final_loss_deviation = abs(final[0] - final[1]) / abs(loss_scale)
    result.band = measured_band(
        result.dtype, name, loss_drift, norm_drift, group_drift, result.honest_final_loss_deviation
    )


def train_baseline(
    workload: Workload,
    dtype: str,
    preset: str,
    params: dict[str, Any],
    seed: int,
    steps: int,
    reference: str,
    band: BandChoice = "measured",
) -> Baseline:
    """Train the reference and, for a measured band, the honest run (the target dtype on the
    reference device; the reference run itself for fp32 against cpu:fp32)."""
    ref_backend, ref_dtype = parse_reference(reference)
    ref = train_trajectory(ref_backend, workload, ref_dtype, preset, params, seed, steps)
    if band == "table":
        return Baseline(reference=ref)
    return Baseline(
        reference=ref,
        honest=honest_trajectory(workload, dtype, preset, params, seed, steps, reference, ref),
        honest_name=honest_name(dtype, reference),
    )


def honest_trajectory(
    workload: Workload,
    dtype: str,
    preset: str,
    params: dict[str, Any],
    seed: int,
    steps: int,
    reference: str,
    reference_run: Trajectory | None = None,
) -> Trajectory:
    """The honest low-precision run: `dtype` on the reference device (the CPU), no prepare()
    beyond the CPU's own. `reference_run` is returned as is when it is that same run."""
    if reference_run is not None and honest_is_reference(dtype, reference):
        return reference_run
    return train_trajectory(
        _reference_device(CPUBackend), workload, dtype, preset, params, seed, steps
    )


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
            band=spec.band,
            baseline=spec.baseline,
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
