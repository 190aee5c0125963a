"""Train to a target, judged: the reference band, the steps ratio, the stability events and the
verdict of a converge case, as pure functions over stored numbers (no torch, no I/O), so that
`bench report` and `bench compare` can judge a stored case again. docs/convergence.md.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel

from harness.results.schema import (
    CaseResult,
    Convergence,
    ConvergenceBand,
    ConvergenceEvent,
    ConvergenceVerdict,
)
from harness.stats import (
    bootstrap_median_ratio_ci,
    jump_ratios,
    product_ci,
    rank_trend,
)

STABILITY_WINDOW = 10
"""Steps of the running median a loss or gradient norm is compared with."""

SPREAD_MARGIN = 2.0
"""A jump counts as a spike / outlier when it exceeds the reference's largest jump (over
all its seeds) by this factor on the excess over 1: threshold = 1 + SPREAD_MARGIN x (max - 1)."""

MIN_SPIKE_THRESHOLD = 1.25
"""A loss spike is at least 25% above the running median, however calm the reference."""

MIN_OUTLIER_THRESHOLD = 2.0
"""A gradient-norm outlier is at least twice the running median, however calm the reference."""

MAX_SKIPPED_FRACTION = 0.25
"""fp16 steps skipped by the loss scaler beyond this fraction of a run make it unstable."""

MEMORY_GROWTH_MIN_BYTES = 32 * 2**20
"""Memory growth below this over a run is allocator noise, not a leak."""

MEMORY_TREND = 0.9
"""Rank correlation of memory against eval point above which the growth is steady."""

STEP_TIME_DRIFT = 1.5
"""A run whose last quarter's median step time is this many times its first quarter's drifted
(reported, never judged: it depends on the machine)."""


def median_target(losses_at_step: Sequence[float]) -> float:
    """The target loss: the median of the reference seeds' eval losses at the target step."""
    return float(statistics.median(losses_at_step))


def band(
    reference: Sequence[int | None],
    honest: Sequence[int | None],
    eval_every: int,
    honest_name: str | None = None,
) -> ConvergenceBand | None:
    """The reference convergence band: from the smallest to the largest steps-to-target of
    the reference's seeds and the honest low-precision run's seeds, widened by one eval
    interval on each side; None when no reference seed reached the target."""
    known = [s for s in [*reference, *honest] if s is not None]
    if not known:
        return None
    return ConvergenceBand(
        low=max(0, min(known) - eval_every),
        high=max(known) + eval_every,
        reference=list(reference),
        honest=list(honest),
        honest_name=honest_name,
        margin=eval_every,
    )


def censored(steps: Sequence[int | None], cap: int) -> list[float]:
    """Steps-to-target with a seed that never reached the target counted at the step cap
    (a lower bound of what it would need)."""
    return [float(s if s is not None else cap) for s in steps]


def steps_ratio(
    device: Sequence[int | None], reference: Sequence[int | None], cap: int
) -> tuple[float, tuple[float, float]] | None:
    """Median device steps-to-target / median reference steps-to-target and its bootstrap
    95% CI over the seeds (seeds not reached count at the cap: the ratio is then a lower
    bound); None when no reference seed reached the target, or the median reference seed
    reached it untrained (step 0: no ratio)."""
    ref = [float(s) for s in reference if s is not None]
    if not ref or not device or statistics.median(ref) <= 0:
        return None
    dev = censored(device, cap)
    point = statistics.median(dev) / statistics.median(ref)
    low, high = bootstrap_median_ratio_ci(dev, ref)
    return point, (min(low, point), max(high, point))


def jump_threshold(runs: Sequence[Sequence[float | None]], minimum: float) -> float:
    """The spike (or outlier) threshold from the reference's own spread: 1 + SPREAD_MARGIN x
    the excess of its largest jump over the running median, never below `minimum`."""
    top = max(
        (r for values in runs for r in jump_ratios(values, STABILITY_WINDOW) if r is not None),
        default=1.0,
    )
    return max(minimum, 1.0 + SPREAD_MARGIN * (top - 1.0))


def jump_events(
    seed: int, kind: str, values: Sequence[float | None], threshold: float
) -> list[ConvergenceEvent]:
    """One event per step whose value jumps above `threshold` x the running median."""
    return [
        ConvergenceEvent(seed=seed, step=t, kind=kind, value=r)  # type: ignore[arg-type]
        for t, r in enumerate(jump_ratios(values, STABILITY_WINDOW))
        if r is not None and r > threshold
    ]


def memory_event(seed: int, steps: Sequence[int], memory: Sequence[int]) -> ConvergenceEvent | None:
    """A memory_growth event when memory grows steadily (rank correlation with the eval
    point above MEMORY_TREND) by at least MEMORY_GROWTH_MIN_BYTES from the first eval point
    to the last; its step is the last eval point, its value the bytes grown."""
    if len(memory) < 3:
        return None
    grown = memory[-1] - memory[0]
    trend = rank_trend([float(m) for m in memory])
    if grown >= MEMORY_GROWTH_MIN_BYTES and trend > MEMORY_TREND:
        return ConvergenceEvent(seed=seed, step=steps[-1], kind="memory_growth", value=grown)
    return None


def drift_event(seed: int, step_times: Sequence[float]) -> ConvergenceEvent | None:
    """A step_time_drift event when the last quarter's median step time is STEP_TIME_DRIFT
    times the first quarter's (runs of at least 40 steps)."""
    quarter = len(step_times) // 4
    if quarter < 10:
        return None
    first = statistics.median(step_times[:quarter])
    last = statistics.median(step_times[-quarter:])
    if first > 0 and last / first >= STEP_TIME_DRIFT:
        return ConvergenceEvent(
            seed=seed, step=len(step_times) - 1, kind="step_time_drift", value=last / first
        )
    return None


def median_known(values: Sequence[float | None]) -> float | None:
    """The median of the known values (a seed's time or energy to target), None if none."""
    known = [v for v in values if v is not None]
    return float(statistics.median(known)) if known else None


def telemetry_summary(result: Convergence) -> dict[str, tuple[int, float, float, float]]:
    """Per telemetry metric (clock_mhz, power_w, ...) over every sample of the device seeds:
    (samples, min, median, max)."""
    series: dict[str, list[float]] = {}
    for sample in result.telemetry:
        for name, value in sample.values.items():
            series.setdefault(name, []).append(value)
    return {
        name: (len(v), min(v), float(statistics.median(v)), max(v))
        for name, v in sorted(series.items())
    }


def _steps_words(steps: Sequence[int | None]) -> str:
    return ", ".join("-" if s is None else str(s) for s in steps)


def judge(result: Convergence) -> tuple[ConvergenceVerdict, list[str]]:
    """The verdict and its reasons, in this order of precedence:
    failed (a non-finite loss, gradient or weight, or memory that grows steadily),
    not_reached (the median seed did not reach the target within the step cap),
    unstable (loss spikes or gradient-norm outliers beyond the reference's own spread, or more
    than MAX_SKIPPED_FRACTION of the steps skipped by the fp16 loss scaler),
    slow / fast (the median steps-to-target above / below the band), else pass."""
    device = [e for e in result.events if e.run == "device"]
    kinds = {e.kind for e in device}
    reasons: list[str] = []
    verdict: ConvergenceVerdict = "pass"
    order: tuple[ConvergenceVerdict, ...] = (
        "pass",
        "fast",
        "slow",
        "unstable",
        "not_reached",
        "failed",
    )

    def worse(level: ConvergenceVerdict, reason: str) -> None:
        nonlocal verdict
        reasons.append(reason)
        if order.index(level) > order.index(verdict):
            verdict = level

    if "nonfinite" in kinds:
        first = min((e for e in device if e.kind == "nonfinite"), key=lambda e: e.step)
        worse("failed", f"non-finite values at step {first.step} (seed {first.seed})")
    if "memory_growth" in kinds:
        grown = max(e.value or 0.0 for e in device if e.kind == "memory_growth")
        worse(
            "failed",
            f"memory grew steadily over the run (+{grown / 2**20:.0f} MiB): something is "
            f"kept every step",
        )
    steps = result.steps_to_target
    reached = [s for s in steps if s is not None]
    median_steps = statistics.median(censored(steps, result.step_cap + 1)) if steps else None
    if steps and (median_steps is None or median_steps > result.step_cap):
        worse(
            "not_reached",
            f"not reached in {result.step_cap} steps: eval loss {result.target_loss:.4g} "
            f"(seeds reached: {len(reached)} of {len(steps)})",
        )
    spikes = [e for e in device if e.kind == "spike"]
    outliers = [e for e in device if e.kind == "grad_outlier"]
    if spikes:
        worse(
            "unstable",
            f"{len(spikes)} loss spike(s) beyond the reference's spread (threshold "
            f"{result.spike_threshold or 0:.3g}x the running median), first at step "
            f"{min(e.step for e in spikes)}",
        )
    if outliers:
        worse(
            "unstable",
            f"{len(outliers)} gradient-norm outlier(s) beyond the reference's spread "
            f"(threshold {result.grad_outlier_threshold or 0:.3g}x the running median), "
            f"steps {', '.join(str(e.step) for e in outliers[:6])}"
            f"{', ...' if len(outliers) > 6 else ''}",
        )
    skipped = [e for e in device if e.kind == "skipped"]
    trained = sum(c.steps_trained for c in result.curves if c.run == "device")
    if trained and len(skipped) / trained > MAX_SKIPPED_FRACTION:
        worse(
            "unstable",
            f"the fp16 loss scaler skipped {len(skipped)} of {trained} steps",
        )
    band_ = result.band
    if band_ is not None and median_steps is not None and median_steps <= result.step_cap:
        ratio = f"{result.steps_ratio:.2f}x" if result.steps_ratio is not None else "?"
        where = (
            f"median {median_steps:g} steps (seeds: {_steps_words(steps)}) against the band "
            f"{band_.low}-{band_.high}"
        )
        if median_steps > band_.high:
            worse("slow", f"needs {ratio} the reference's steps to the target: {where}")
        elif median_steps < band_.low:
            worse(
                "fast",
                f"reaches the target faster than the reference band ({ratio}): {where}; "
                f"suspicious (MLPerf rejects runs that converge faster than the reference)",
            )
    elif band_ is None:
        reasons.append("no reference seed reached the target: no band")
    if not reasons:
        reasons.append(f"steps-to-target {_steps_words(steps)} within the band")
    return verdict, reasons


def effective_penalty(
    result: Convergence, penalty: float, penalty_ci: tuple[float, float] | None
) -> tuple[float, tuple[float, float]] | None:
    """The effective training penalty: steps ratio x step-time training penalty, with the two
    CIs combined (harness.stats.product_ci); None without a steps ratio."""
    if result.steps_ratio is None:
        return None
    ratio_ci = result.steps_ratio_ci or (result.steps_ratio, result.steps_ratio)
    value = result.steps_ratio * penalty
    return value, product_ci(
        result.steps_ratio, ratio_ci, penalty, penalty_ci or (penalty, penalty)
    )


class ConvergenceComparison(BaseModel):
    """One converge case in two runs: steps and time to the target, judged against the seed
    spread (the noise of steps-to-target)."""

    case: str
    base_steps: list[int | None]
    new_steps: list[int | None]
    steps_ratio: float | None = None
    """Median new steps-to-target over median base (unreached seeds at the cap)."""
    time_ratio: float | None = None
    """Median new time-to-target over median base (seconds of training; machine-dependent)."""
    verdict: Literal["regressed", "improved", "unchanged", "not comparable"]
    reason: str = ""


def compare_convergence(case: str, base: Convergence, new: Convergence) -> ConvergenceComparison:
    """Regressed when every new seed needs more steps than every base seed (the seeds' spread
    is the noise), improved when every new seed needs fewer, else unchanged; not comparable
    when the targets differ (another reference, preset or target step)."""
    out = ConvergenceComparison(
        case=case,
        base_steps=base.steps_to_target,
        new_steps=new.steps_to_target,
        verdict="unchanged",
    )
    if (base.target_step, base.eval_every) != (new.target_step, new.eval_every) or abs(
        base.target_loss - new.target_loss
    ) > 1e-6 * max(1.0, abs(base.target_loss)):
        out.verdict = "not comparable"
        out.reason = (
            f"the targets differ ({base.target_loss:.4g} at step {base.target_step} vs "
            f"{new.target_loss:.4g} at step {new.target_step})"
        )
        return out
    cap = max(base.step_cap, new.step_cap) + 1
    b, n = censored(base.steps_to_target, cap), censored(new.steps_to_target, cap)
    if not b or not n:
        out.verdict = "not comparable"
        out.reason = "no seeds"
        return out
    out.steps_ratio = statistics.median(n) / statistics.median(b)
    tb = [t for t in base.time_to_target_s if t is not None]
    tn = [t for t in new.time_to_target_s if t is not None]
    if tb and tn:
        out.time_ratio = statistics.median(tn) / statistics.median(tb)
    if min(n) > max(b):
        out.verdict = "regressed"
        out.reason = f"every new seed needs more steps ({min(n):g} > {max(b):g})"
    elif max(n) < min(b):
        out.verdict = "improved"
        out.reason = f"every new seed needs fewer steps ({max(n):g} < {min(b):g})"
    else:
        out.reason = "within the seeds' spread"
    return out


def compare_runs_convergence(
    base_cases: Sequence[CaseResult], new_cases: Sequence[CaseResult]
) -> list[ConvergenceComparison]:
    """compare_convergence for every converge case present in both runs (matched by key)."""
    by_key = {c.key.identity(): c for c in base_cases if c.convergence is not None}
    out = []
    for case in new_cases:
        old = by_key.get(case.key.identity())
        if case.convergence is not None and old is not None and old.convergence is not None:
            out.append(compare_convergence(case.key.id, old.convergence, case.convergence))
    return out
