"""The fidelity judge: a check's deviations, bands and verdict from its stored trajectories.

Pure (no torch): `judge_trajectories` is what a fresh check calls after training, and `rejudge`
applies the current bands (harness.results.fidelity) to a stored result, so a report built
after a band change shows the verdict the current rules give.

Scales: a step's loss deviation is |target - reference| / the reference's loss at that step,
so a fault that moves the loss by 1% reads 1% whether the loss is 70 or 3 nats; the final loss
(mean of the last tenth of the steps) is judged relative to the reference's final loss. Both
scales are kept at or above LOSS_SCALE_FLOOR x the reference's initial loss, so a loss that
approaches zero does not turn rounding noise into a large relative deviation.
Gradient norms are divided by the reference's median gradient norm (a norm can pass near zero
at a step, the median of a run does not).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel

from harness.results.fidelity import (
    BAND_FLOORS,
    BAND_K,
    LOSS_SCALE_FLOOR,
    MAX_SKIPPED_FRACTION,
    TOLERANCES,
    WARN_FACTOR,
    FidelityBand,
    FidelityResult,
    FidelityTolerance,
)

if TYPE_CHECKING:
    from harness.results.schema import RunRecord

Series = list[float | None]


def median_abs(values: Series) -> float | None:
    """The median of the known |values| (the upper one of an even count); None if none."""
    known = sorted(abs(v) for v in values if v is not None)
    return known[len(known) // 2] if known else None


def _deviations(target: Series, reference: Series, scales: Series, steps: int) -> Series:
    """|t - r| / scale at each of the first `steps` steps (None where t, r or the scale is
    unknown or the scale is zero)."""
    out: Series = []
    for i in range(steps):
        t = target[i] if i < len(target) else None
        r = reference[i] if i < len(reference) else None
        s = scales[i] if i < len(scales) else None
        out.append(abs(t - r) / abs(s) if t is not None and r is not None and s else None)
    return out


def loss_scale(value: float | None, reference: Series) -> float | None:
    """|value|, but at least LOSS_SCALE_FLOOR x |the reference's initial loss| (None when
    either is unknown)."""
    first = reference[0] if reference else None
    if value is None or first is None:
        return None
    return max(abs(value), LOSS_SCALE_FLOOR * abs(first))


def loss_deviations(target: Series, reference: Series, steps: int) -> Series:
    """|t - r| / loss_scale(r) per step over the first `steps` steps: the loss on its own
    scale (the reference's loss at that step)."""
    return _deviations(target, reference, [loss_scale(r, reference) for r in reference], steps)


def norm_deviations(target: Series, reference: Series, steps: int) -> Series:
    """|t - r| / the reference's median |norm| per step over the first `steps` steps."""
    return _deviations(target, reference, [median_abs(reference)] * steps, steps)


def running_max(values: Series) -> list[float]:
    """The largest value up to each step (0.0 before the first known one): drift accumulates,
    so a step where the honest run happens to cross the reference does not narrow the band."""
    out: list[float] = []
    top = 0.0
    for value in values:
        top = max(top, value or 0.0)
        out.append(top)
    return out


def top(values: Series) -> float:
    """The largest known value (0.0 when none)."""
    return max((v for v in values if v is not None), default=0.0)


def final_losses(target: Series, reference: Series) -> tuple[float, float] | None:
    """Mean target and mean reference loss on the last tenth of the steps (at least one)
    where both are finite: robust to the noise of one batch."""
    pairs = [
        (t, r) for t, r in zip(target, reference, strict=False) if t is not None and r is not None
    ]
    if not pairs:
        return None
    tail = pairs[-max(1, len(pairs) // 10) :]
    return sum(t for t, _ in tail) / len(tail), sum(r for _, r in tail) / len(tail)


def final_deviation(target: Series, reference: Series) -> float | None:
    """|final target - final reference| / loss_scale(final reference) (final_losses; None if
    unknown)."""
    final = final_losses(target, reference)
    scale = loss_scale(final[1], reference) if final is not None else None
    if final is None or not scale:
        return None
    return abs(final[0] - final[1]) / scale


def measured_band(
    dtype: str,
    honest: str,
    loss_drift: Series,
    grad_norm_drift: Series,
    group_drift: dict[str, Series],
    final_drift: float | None,
) -> FidelityBand:
    """The per-step bands from the honest run's per-step deviations (see FidelityBand)."""
    floor = BAND_FLOORS.get(dtype, BAND_FLOORS["fp32"])

    def bands(drift: Series, minimum: float) -> tuple[list[float], list[float]]:
        passing = [BAND_K * d + minimum for d in running_max(drift)]
        return passing, [WARN_FACTOR * p for p in passing]

    loss_pass, loss_warn = bands(loss_drift, floor.loss)
    norm_pass, norm_warn = bands(grad_norm_drift, floor.grad_norm)
    groups = {g: bands(d, floor.grad_norm) for g, d in group_drift.items()}
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
        final_loss_warn=WARN_FACTOR
        * (BAND_K * max(final_drift or 0.0, top(loss_drift)) + floor.loss),
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


def compare(result: FidelityResult) -> None:
    """Fill the deviations, the honest drifts and the band of `result` from its stored
    trajectories and `compared_steps`: a measured band when it holds an honest run, the
    dtype's table otherwise."""
    n = result.compared_steps or 0
    ref_loss, ref_norm = result.reference_loss, result.reference_grad_norm
    result.tolerance = TOLERANCES.get(result.dtype, TOLERANCES["fp32"])
    result.max_rel_loss_deviation = top(loss_deviations(result.target_loss, ref_loss, n))
    result.max_rel_grad_norm_deviation = top(norm_deviations(result.target_grad_norm, ref_norm, n))
    result.max_rel_group_grad_norm_deviation = {
        group: top(norm_deviations(values, result.reference_group_grad_norm.get(group, []), n))
        for group, values in result.target_group_grad_norm.items()
    }
    routing = result.routing_match[: n or len(result.routing_match)]
    result.max_routing_mismatch = 1.0 - min(routing) if routing else None
    final = final_losses(result.target_loss, ref_loss)
    result.final_loss_ratio = final[0] / final[1] if final is not None and final[1] else None
    result.final_loss_deviation = final_deviation(result.target_loss, ref_loss)
    if not result.honest_loss:
        result.honest_loss_drift = result.honest_grad_norm_drift = None
        result.honest_final_loss_deviation = None
        result.honest_group_grad_norm_drift = {}
        result.band = table_band(result.tolerance, n, list(result.target_group_grad_norm))
        return
    loss_drift = loss_deviations(result.honest_loss, ref_loss, n)
    norm_drift = norm_deviations(result.honest_grad_norm, ref_norm, n)
    group_drift = {
        group: norm_deviations(result.honest_group_grad_norm.get(group, []), reference, n)
        for group, reference in result.reference_group_grad_norm.items()
    }
    result.honest_loss_drift = top(loss_drift)
    result.honest_grad_norm_drift = top(norm_drift)
    result.honest_group_grad_norm_drift = {g: top(d) for g, d in group_drift.items()}
    result.honest_final_loss_deviation = final_deviation(result.honest_loss, ref_loss)
    honest = result.band.honest if result.band and result.band.honest else None
    result.band = measured_band(
        result.dtype,
        honest or f"{result.reference.partition(':')[0]}:{result.dtype}",
        loss_drift,
        norm_drift,
        group_drift,
        result.honest_final_loss_deviation,
    )


class _Breach(BaseModel):
    """The worst step of one compared quantity against its band."""

    level: Literal["warn", "fail"]
    step: int
    first: int
    deviation: float
    limit: float
    pass_limit: float


def _breach(deviations: Series, passing: list[float], warning: list[float]) -> _Breach | None:
    """Where deviations leave the band: the level (fail beyond the warn band anywhere), the
    worst step (largest deviation / limit), the first step beyond the pass band."""
    known = [(i, d) for i, d in enumerate(deviations) if d is not None and i < len(passing)]
    outside = [(i, d) for i, d in known if d > passing[i]]
    if not outside:
        return None
    failing = [(i, d) for i, d in outside if d > warning[i]]
    level: Literal["warn", "fail"] = "fail" if failing else "warn"
    limits = warning if failing else passing
    worst, deviation = max(failing or outside, key=lambda item: item[1] / limits[item[0]])
    return _Breach(
        level=level,
        step=worst,
        first=outside[0][0],
        deviation=deviation,
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


def _direction(target: Series, reference: Series, start: int) -> str:
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


Worse = Callable[[str], None]


def judge(result: FidelityResult) -> None:
    """Set `result.verdict` and `result.reasons` from its deviations and `result.band`
    (filled by `compare`; the dtype's table band when the result has none)."""
    tolerance = TOLERANCES.get(result.dtype, TOLERANCES["fp32"])
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
    honest = band.source == "measured"
    for what, deviate, target, reference, drift_of, floor, passing, warning in (
        (
            "loss", loss_deviations, result.target_loss, result.reference_loss,
            result.honest_loss, band.loss_floor, band.loss_pass, band.loss_warn,
        ),
        (
            "gradient norm", norm_deviations, result.target_grad_norm,
            result.reference_grad_norm, result.honest_grad_norm, band.grad_norm_floor,
            band.grad_norm_pass, band.grad_norm_warn,
        ),
    ):  # fmt: skip
        breach = _breach(deviate(target, reference, compared), passing, warning)
        if breach is None:
            continue
        worse(breach.level)
        drift = running_max(deviate(drift_of, reference, compared)) if honest else []
        since = f" (outside the pass band from step {breach.first})" * (breach.first < breach.step)
        reasons.append(
            f"{what} deviation {breach.deviation:.3g} at step {breach.step} exceeds "
            + _band_words(result, breach, drift, floor)
            + since
        )
    reasons.extend(_group_reasons(result, worse))
    reasons.extend(_routing_reasons(result, tolerance, worse))
    final = result.final_loss_deviation
    if final is not None and band.final_loss_warn is not None and final > band.final_loss_warn:
        worse("fail")
        reasons.append(
            f"the final loss differs by {final:.3g} of the reference's final loss (ratio "
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
    first_loss = result.target_loss[0] if result.target_loss else None
    diff = result.determinism_max_abs_diff
    if (
        result.deterministic is False
        and diff is not None
        and first_loss is not None
        and diff > repeat_limit * abs(first_loss)
    ):
        worse("warn")
        reasons.append(f"two target runs differ by up to {diff:.3g} (more than the loss pass band)")
    if verdict == "fail" and result.dtype == "fp32" and result.fp32_downcasts:
        reasons.append(
            f"fp32 matmuls/convolutions on this device ran in reduced precision "
            f"({', '.join(result.fp32_downcasts)}): turn that off to check true fp32"
        )
    result.verdict = verdict  # type: ignore[assignment]
    result.reasons = reasons


def _routing_reasons(
    result: FidelityResult, tolerance: FidelityTolerance, worse: Worse
) -> list[str]:
    """A reason when the largest routing mismatch (MoE) leaves the dtype's tolerance."""
    mismatch = result.max_routing_mismatch
    ok, warn = tolerance.routing_pass, tolerance.routing_warn
    if mismatch is None or ok is None or mismatch <= ok:
        return []
    level = "fail" if warn is not None and mismatch > warn else "warn"
    worse(level)
    limit = warn if level == "fail" else ok
    return [
        f"routing diverges: in a compared step {mismatch:.3g} of the tokens chose a "
        f"different top-k expert set than the reference, beyond the {result.dtype} "
        f"{'warn' if level == 'fail' else 'pass'} tolerance {limit:g}"
    ]


def _group_reasons(result: FidelityResult, worse: Worse) -> list[str]:
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
        breach = _breach(
            norm_deviations(target, reference, compared),
            band.group_grad_norm_pass[group],
            band.group_grad_norm_warn[group],
        )
        if breach is None:
            continue
        worse(breach.level)
        honest = result.honest_group_grad_norm.get(group, [])
        drift = running_max(norm_deviations(honest, reference, compared))
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


def judge_trajectories(result: FidelityResult) -> FidelityResult:
    """`compare` then `judge`, in place; returns `result`."""
    compare(result)
    judge(result)
    return result


def rejudge(result: FidelityResult) -> FidelityResult:
    """A copy of a stored result judged again under the current bands and scales, from its
    stored trajectories. A check that did not run (skipped, or failed with an error) is
    returned as stored."""
    if result.verdict == "skipped" or result.error is not None or not result.target_loss:
        return result
    return judge_trajectories(result.model_copy(deep=True))


def rejudge_record(record: RunRecord) -> RunRecord:
    """`record` with every fidelity check re-judged (rejudge); the record itself unchanged."""
    if not record.fidelity:
        return record
    return record.model_copy(update={"fidelity": [rejudge(f) for f in record.fidelity]})
