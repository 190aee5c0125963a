"""Comparing the inference scenarios of two runs, with the rules cases follow
(harness.analysis.compare): a single-stream latency percentile (p50, p99 of latency, TTFT,
TPOT) changed only when Mann-Whitney U on the per-request values gives p < 0.05 AND the
bootstrap 95% CI of the ratio of the percentiles lies wholly beyond the threshold. The max
rate at the targets is known only to its search bracket [max_rate, missed_rate): it changed
only when both runs have a bracket and the two are apart by more than the threshold; a change
beyond the threshold otherwise is `noisy`, as is any change of the offline throughput (one
figure per run)."""

from __future__ import annotations

from pydantic import BaseModel

from harness.analysis.compare import Thresholds, Verdict, classify
from harness.results.schema import RunRecord, ScenarioPoint, ScenarioResult
from harness.stats import compare_quantiles

QUANTILES = {"p50": 0.5, "p99": 0.99}


class ScenarioComparison(BaseModel):
    """One compared figure of one scenario case: `ratio` is new / base (for latencies above 1
    is slower; for the max rate above 1 is better)."""

    case_id: str
    figure: str
    """e.g. `single-stream p99 ttft`, `max rate`."""
    verdict: Verdict
    base: float | None = None
    new: float | None = None
    ratio: float | None = None
    ratio_ci95: tuple[float, float] | None = None
    p_value: float | None = None
    threshold: float | None = None
    reason: str = ""


def _latencies(point: ScenarioPoint, metric: str) -> list[float]:
    if metric == "latency":
        return point.latency_s
    if metric == "ttft":
        return point.ttft_s
    return [t for t in point.tpot_s if t is not None]


def _compare_offline(
    case_id: str, base: ScenarioPoint, new: ScenarioPoint, threshold: float
) -> ScenarioComparison:
    """Offline throughput is one figure per run (its latencies depend on how many requests
    were queued): without samples no change is established, one beyond the threshold is
    `noisy`."""
    ratio = new.achieved_rate / base.achieved_rate
    return ScenarioComparison(
        case_id=case_id,
        figure="offline throughput",
        verdict="noisy" if abs(ratio - 1.0) > threshold else "unchanged",
        base=base.achieved_rate,
        new=new.achieved_rate,
        ratio=ratio,
        threshold=threshold,
        reason="one figure per run: no significance test",
    )


def _compare_points(
    case_id: str, base: ScenarioPoint, new: ScenarioPoint, name: str, threshold: float
) -> list[ScenarioComparison]:
    rows = []
    metrics = [m for m in ("latency", "ttft", "tpot") if _latencies(base, m) and _latencies(new, m)]
    for metric in metrics:
        for label, q in QUANTILES.items():
            old, now = _latencies(base, metric), _latencies(new, metric)
            result = compare_quantiles(old, now, q)
            rows.append(
                ScenarioComparison(
                    case_id=case_id,
                    figure=f"{name} {label} {metric}",
                    verdict=classify(result, threshold),
                    base=base.percentiles[metric].model_dump()[label],
                    new=new.percentiles[metric].model_dump()[label],
                    ratio=result.ratio,
                    ratio_ci95=result.ci95,
                    p_value=result.p_value,
                    threshold=threshold,
                )
            )
    return rows


def _compare_max_rate(
    case_id: str, base: ScenarioResult, new: ScenarioResult, threshold: float
) -> ScenarioComparison | None:
    if base.max_rate is None and new.max_rate is None:
        return None
    entry = ScenarioComparison(
        case_id=case_id,
        figure="max rate at target",
        verdict="unchanged",
        base=base.max_rate,
        new=new.max_rate,
        threshold=threshold,
    )
    if base.targets != new.targets:
        return entry.model_copy(
            update={"verdict": "not comparable", "reason": "the p99 targets differ"}
        )
    if base.max_rate is None or new.max_rate is None:
        verdict: Verdict = "failed" if new.max_rate is None else "improved"
        return entry.model_copy(update={"verdict": verdict, "reason": "no rate met the targets"})
    ratio = new.max_rate / base.max_rate
    base_high = base.missed_rate or base.max_rate
    new_high = new.missed_rate or new.max_rate
    bracketed = base.missed_rate is not None and new.missed_rate is not None
    if bracketed and new_high < base.max_rate * (1.0 - threshold):
        verdict = "regressed"
    elif bracketed and new.max_rate > base_high * (1.0 + threshold):
        verdict = "improved"
    elif abs(ratio - 1.0) > threshold:
        verdict = "noisy"
    else:
        verdict = "unchanged"
    brackets = (
        f"search brackets [{base.max_rate:.4g}, {base_high:.4g}) vs "
        f"[{new.max_rate:.4g}, {new_high:.4g}) req/s"
    )
    return entry.model_copy(update={"verdict": verdict, "ratio": ratio, "reason": brackets})


def compare_scenarios(
    base: RunRecord, new: RunRecord, thresholds: Thresholds | None = None
) -> list[ScenarioComparison]:
    """Every scenario case present in both runs (same key), figure by figure."""
    thresholds = thresholds or Thresholds()
    old_by_id = {result.key.id: result for result in base.scenarios}
    rows: list[ScenarioComparison] = []
    for now in new.scenarios:
        old = old_by_id.get(now.key.id)
        if old is None:
            continue
        case_id = now.key.id
        threshold = thresholds.for_workload(now.key.workload)
        if old.key != now.key:
            rows.append(
                ScenarioComparison(
                    case_id=case_id, figure="all", verdict="not comparable",
                    reason="the workload parameters differ",
                )
            )  # fmt: skip
            continue
        if now.status != "ok" or old.status != "ok":
            verdict: Verdict = "failed" if old.status == "ok" else "not comparable"
            reason = now.error.message if now.error else "failed in the base run"
            rows.append(ScenarioComparison(case_id=case_id, figure="all", verdict=verdict,
                                           reason=reason))  # fmt: skip
            continue
        if old.single_stream is not None and now.single_stream is not None:
            rows += _compare_points(
                case_id, old.single_stream, now.single_stream, "single-stream", threshold
            )
        if old.offline is not None and now.offline is not None:
            rows.append(_compare_offline(case_id, old.offline, now.offline, threshold))
        rate = _compare_max_rate(case_id, old, now, threshold)
        if rate is not None:
            rows.append(rate)
    return rows
