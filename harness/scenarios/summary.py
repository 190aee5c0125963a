"""From request timings to a stored ScenarioPoint: per-request latency, TTFT and TPOT, their
percentiles with bootstrap CIs, rates, and whether the p99s meet the targets."""

from __future__ import annotations

import numpy as np

from harness.results.schema import Percentiles, ScenarioKind, ScenarioPoint
from harness.scenarios.engine import Timings
from harness.stats import bootstrap_quantile_ci, threshold_side

QUANTILES = {"p50": 0.50, "p90": 0.90, "p99": 0.99}
TARGET_METRICS = {"tokens": ("ttft", "tpot"), "items": ("latency",)}
"""The p99s the server scenario is held to, by request kind."""


def percentiles(values: list[float], seed: int = 0) -> Percentiles:
    """p50 / p90 / p99 (linear interpolation) of `values` with bootstrap 95% CIs."""
    data = np.asarray(values, dtype=float)
    fields: dict[str, object] = {}
    for name, q in QUANTILES.items():
        fields[name] = float(np.quantile(data, q))
        fields[f"{name}_ci95"] = bootstrap_quantile_ci(values, q, seed=seed)
    return Percentiles.model_validate(fields)


def point(
    scenario: ScenarioKind,
    timings: Timings,
    input_len: list[int] | None = None,
    output_len: list[int] | None = None,
    target_rate: float | None = None,
) -> ScenarioPoint:
    """The ScenarioPoint of one run. LLM requests (lengths given) get TTFT (arrival to first
    token) and TPOT ((last token - first token) / (L_out - 1), None for a one-token output)."""
    latency = [d - a for a, d in zip(timings.arrival_s, timings.done_s, strict=True)]
    summary: dict[str, Percentiles] = {"latency": percentiles(latency)}
    ttft: list[float] = []
    tpot: list[float | None] = []
    tokens_per_s = None
    if output_len is not None:
        ttft = [f - a for a, f in zip(timings.arrival_s, timings.first_s, strict=True)]
        tpot = [
            (d - f) / (n - 1) if n > 1 else None
            for f, d, n in zip(timings.first_s, timings.done_s, output_len, strict=True)
        ]
        summary["ttft"] = percentiles(ttft)
        known = [t for t in tpot if t is not None]
        if known:
            summary["tpot"] = percentiles(known)
        tokens_per_s = sum(output_len) / timings.duration_s
    return ScenarioPoint(
        scenario=scenario,
        target_rate=target_rate,
        requests=len(latency),
        duration_s=timings.duration_s,
        achieved_rate=len(latency) / timings.duration_s,
        tokens_per_s=tokens_per_s,
        arrival_s=timings.arrival_s,
        latency_s=latency,
        ttft_s=ttft,
        tpot_s=tpot,
        input_len=list(input_len or []),
        output_len=list(output_len or []),
        percentiles=summary,
    )


def judge(result: ScenarioPoint, targets: dict[str, float]) -> ScenarioPoint:
    """`result` with `meets_target` (every targeted p99 within its bound) and `decided`
    (no p99's 95% CI straddles its bound, `threshold_side`, so more requests would not flip
    the verdict)."""
    meets, decided = True, True
    for metric, bound in targets.items():
        stats = result.percentiles.get(metric)
        if stats is None:
            continue
        meets = meets and stats.p99 <= bound
        decided = decided and threshold_side(stats.p99_ci95, bound) != "undecided"
    return result.model_copy(update={"meets_target": meets, "decided": decided})


def merge(points: list[ScenarioPoint]) -> ScenarioPoint:
    """Pool repeated runs of one server rate into one point (requests concatenated, rates
    over the summed duration); arrival times stay relative to each run's own start."""
    if len(points) == 1:
        return points[0]
    first = points[0]
    duration = sum(p.duration_s for p in points)
    requests = sum(p.requests for p in points)
    latency = [x for p in points for x in p.latency_s]
    ttft = [x for p in points for x in p.ttft_s]
    tpot = [x for p in points for x in p.tpot_s]
    output_len = [x for p in points for x in p.output_len]
    summary = {"latency": percentiles(latency)}
    if ttft:
        summary["ttft"] = percentiles(ttft)
        known = [t for t in tpot if t is not None]
        if known:
            summary["tpot"] = percentiles(known)
    return first.model_copy(
        update={
            "requests": requests,
            "duration_s": duration,
            "achieved_rate": requests / duration,
            "tokens_per_s": sum(output_len) / duration if output_len else None,
            "arrival_s": [x for p in points for x in p.arrival_s],
            "latency_s": latency,
            "ttft_s": ttft,
            "tpot_s": tpot,
            "input_len": [x for p in points for x in p.input_len],
            "output_len": output_len,
            "percentiles": summary,
        }
    )
