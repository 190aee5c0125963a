"""The parent's side of rounds: one function folds the RoundResults of a case into its
CaseResult (like pyperf's Benchmark.add_runs). The statistics (median of round medians,
hierarchical CI, stability) are computed here, once, from the raw samples of every round."""

from __future__ import annotations

import statistics
from collections.abc import Sequence

from backends.base import EnergyReading
from harness.errors import failed_result
from harness.measurement.denormals import sample_trend
from harness.measurement.energy import case_energy
from harness.measurement.phases import breakdown_of
from harness.measurement.timing import summarize
from harness.measurement.yardstick import append_readings
from harness.results.schema import (
    CaseEnergy,
    CaseKey,
    CaseResult,
    Measurement,
    PhaseBreakdown,
    RankTiming,
    Throughput,
)
from harness.run.case import RoundResult


def fold_rounds(
    key: CaseKey, rounds: Sequence[RoundResult], precision: float | None = None
) -> CaseResult:
    """The CaseResult of a case's rounds, in the order measured.

    Samples are concatenated with their round labels and summarized once
    (`harness.measurement.timing.summarize`: median of round medians, hierarchical CI, and,
    with several rounds and a `precision`, stability from that CI); warm-up and time are
    summed, the cold start is the first round's. Yardsticks are one series per yardstick,
    energy the sum of the rounds' windows, peak memory the first reading, phases one
    breakdown over every round's iterations, host fallbacks the union, the profile, the denormal
    count and the workload's extra figures the last round's; the within-round trend of the
    samples is detected here (`sample_trend`), its cause named when denormals were left. A
    round that failed fails the case with its error (keeping its samples for a NaN/Inf
    output); no round: ValueError."""
    if not rounds:
        raise ValueError("fold_rounds needs at least one round")
    fallbacks = sorted({op for r in rounds for op in r.host_fallbacks}) or None
    started = next((r.started_at for r in rounds if r.started_at is not None), None)
    duration = sum(r.duration_s or 0.0 for r in rounds)
    stamps = {"started_at": started, "duration_s": duration, "host_fallbacks": fallbacks}
    bad = next((r for r in rounds if r.status != "ok"), None)
    if bad is not None:
        assert bad.error is not None
        extra = {"measurement": _measurement([bad], precision)} if bad.samples_s else {}
        return failed_result(CaseResult, key, bad.error.kind, bad.error.message, **extra, **stamps)
    last = rounds[-1]
    measurement = _measurement(rounds, precision)
    seconds, world = measurement.median, last.world
    flops, moved = last.flops, last.bytes_moved
    yardstick: dict[str, list[float]] | None = None
    for r in rounds:
        yardstick = append_readings(yardstick, r.yardsticks)
    energy, energy_note = _energy(rounds, seconds, last)
    denormals = next((r.denormals for r in reversed(rounds) if r.denormals is not None), None)
    return CaseResult(
        key=key,
        status="ok",
        measurement=measurement,
        throughput=Throughput(value=world * last.work_items / seconds, unit=f"{last.work_unit}/s"),
        flops_per_step=world * flops if flops is not None else None,
        achieved_flops=world * flops / seconds if flops else None,
        bytes_per_step=world * moved if moved is not None else None,
        achieved_bandwidth=world * moved / seconds if moved else None,
        extra=dict(last.extra),
        peak_memory_bytes=next(
            (r.peak_memory_bytes for r in rounds if r.peak_memory_bytes is not None), None
        ),
        yardstick=yardstick,
        energy=energy,
        energy_note=energy_note,
        phases=_phases(rounds),
        profile=next((r.profile for r in reversed(rounds) if r.profile is not None), None),
        per_rank=_per_rank(rounds),
        denormals=denormals,
        trend=sample_trend(measurement, denormals),
        **stamps,
    )


def _measurement(rounds: Sequence[RoundResult], precision: float | None) -> Measurement:
    samples = [s for r in rounds for s in r.samples_s]
    labels = [r.round for r in rounds for _ in r.samples_s]
    return summarize(
        samples,
        iterations_per_sample=rounds[0].iterations_per_sample,
        warmup_iterations=sum(r.warmup_iterations for r in rounds),
        cold_start_s=rounds[0].cold_start_s,
        total_time_s=sum(r.total_time_s for r in rounds),
        stable=rounds[-1].stable,
        sample_rounds=labels,
        precision=precision,
    )


def _energy(
    rounds: Sequence[RoundResult], seconds: float, last: RoundResult
) -> tuple[CaseEnergy | None, str | None]:
    """The case's energy over every round's window (the first reason when a round has no
    joules, or the path's own reason when it reads none)."""
    readings = [r.energy for r in rounds]
    if any(e is None for e in readings):
        return None, last.energy_note or "no energy reading in some round"
    missing = next((e for e in readings if e is not None and e.joules is None), None)
    if missing is not None:
        return None, missing.reason or "the energy source gave no reading"
    joules = sum(e.joules or 0.0 for e in readings if e is not None)
    window = sum(e.seconds for e in readings if e is not None)
    method = readings[-1].method if readings[-1] is not None else ""
    reading = EnergyReading(joules=joules, seconds=window, method=method)
    return case_energy(reading, seconds, last.work_items, last.work_unit)


def _phases(rounds: Sequence[RoundResult]) -> PhaseBreakdown | None:
    """One breakdown over every round's instrumented iterations."""
    parts = [r.phases for r in rounds if r.phases is not None]
    if not parts:
        return None
    breakdown = breakdown_of(
        [i for p in parts for i in p.iterations],
        [t for p in parts for t in p.step_times],
        parts[-1].clock,
        parts[-1].attribution,
    )
    if parts[-1].optimizer_bytes is not None:
        breakdown.optimizer_bytes = parts[-1].optimizer_bytes
        breakdown.optimizer_bytes_note = parts[-1].optimizer_bytes_note
    return breakdown


def _per_rank(rounds: Sequence[RoundResult]) -> list[RankTiming] | None:
    """Each rank's samples over every round, its median, and its highest peak memory."""
    if all(r.per_rank is None for r in rounds):
        return None
    merged: dict[int, RankTiming] = {}
    for r in rounds:
        for timing in r.per_rank or []:
            kept = merged.get(timing.rank)
            if kept is None:
                merged[timing.rank] = timing.model_copy(deep=True)
                continue
            kept.samples_s += timing.samples_s
            peaks = [p for p in (kept.peak_memory_bytes, timing.peak_memory_bytes) if p]
            kept.peak_memory_bytes = max(peaks) if peaks else None
    for timing in merged.values():
        timing.median = statistics.median(timing.samples_s)
    return [merged[rank] for rank in sorted(merged)]
