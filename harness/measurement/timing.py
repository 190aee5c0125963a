"""`measure(fn, backend)`: device-accurate timing with adaptive sampling and a CI of the median.

Like `torch.utils.benchmark.Timer.blocked_autorange`, but the block size is chosen so that
timer overhead stays below 1e-4 of a sample, the first call is timed apart as cold start,
and sampling stops when the 95% CI of the median is narrow enough or the time budget is spent.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable

from pydantic import BaseModel

from backends.base import Backend, DeviceTimer
from harness import stats
from harness.results.schema import Measurement

MAX_OVERHEAD_RATIO = 1e-4


def _noop() -> None:
    return None


def timer_overhead_s(timer: DeviceTimer, repeats: int = 25) -> float:
    """Median reading of the timer around a single empty call: its fixed cost per block."""
    return statistics.median(timer.time_block(_noop, 1) for _ in range(repeats))


class Schedule(BaseModel):
    """What one run of the sampling schedule produced, before any statistics."""

    samples_s: list[float]
    """Seconds per call, one value per sample, in the order taken."""
    iterations_per_sample: int
    warmup_iterations: int
    cold_start_s: float | None
    stable: bool


TakeSample = Callable[[int, float], tuple[float, float]]
"""`take_sample(calls, sampling_start)`: time one block of `calls` calls and return (seconds per
call, seconds of sampling spent since `sampling_start`, a `time.perf_counter()` reading). The
stop rule decides on exactly these two values, so a caller that must agree with other
processes returns values it agreed on."""


def run_schedule(
    time_block: Callable[[int], float],
    overhead_s: Callable[[], float],
    *,
    take_sample: TakeSample | None = None,
    time_cold_start: bool = True,
    warmup_s: float,
    warmup_iterations: int,
    min_samples: int,
    max_samples: int,
    max_time_s: float,
    precision: float,
    min_sample_s: float,
    iterations: int | None = None,
    on_warm: Callable[[], None] | None = None,
) -> Schedule:
    """The one sampling schedule behind `measure` and the distributed harness.

    `time_block(calls) -> seconds` times one block of calls; `overhead_s()` is the timer's
    fixed cost per block; `take_sample` takes one sample (default: `time_block` divided by
    the calls, with this process's clock for the time spent). Promises, in order: the first
    call is timed apart as the cold start (unless `time_cold_start` is False); `warm_up` runs
    for `warmup_s` and `warmup_iterations`; blocks are sized by `block_size`; then samples are
    taken until `max_samples`, stopping early (after at least `min_samples`) once
    `precise_enough` (`stable=True`) or once the time spent reaches `max_time_s`. A given
    `iterations` fixes the block size (later rounds of a case keep the first round's).
    `on_warm()`, when given, is called once after the cold start, the warm-up and the block
    sizing, just before the first sample: a meter started there (energy) sees only the
    sampling, never cold start, compilation or warm-up."""
    if take_sample is None:

        def take_sample(calls: int, sampling_start: float) -> tuple[float, float]:
            per_call = time_block(calls) / calls
            return per_call, time.perf_counter() - sampling_start

    cold_start = time_block(1) if time_cold_start else None
    per_call, warmup_done = warm_up(time_block, warmup_s, warmup_iterations)
    if iterations is None:
        iterations = block_size(per_call, overhead_s(), min_sample_s)
    if on_warm is not None:
        on_warm()

    samples: list[float] = []
    stable = False
    sampling_start = time.perf_counter()
    while len(samples) < max_samples:
        sample, spent = take_sample(iterations, sampling_start)
        samples.append(sample)
        if len(samples) < min_samples:
            continue
        if precise_enough(samples, precision):
            stable = True
            break
        if spent >= max_time_s:
            break
    return Schedule(
        samples_s=samples,
        iterations_per_sample=iterations,
        warmup_iterations=warmup_done,
        cold_start_s=cold_start,
        stable=stable,
    )


def measure(
    fn: Callable[[], object],
    backend: Backend | None = None,
    *,
    warmup_s: float = 0.1,
    warmup_iterations: int = 2,
    min_samples: int = 10,
    max_samples: int = 1000,
    max_time_s: float = 2.0,
    precision: float = 0.01,
    min_sample_s: float = 1e-3,
    time_cold_start: bool = True,
    iterations: int | None = None,
    on_warm: Callable[[], None] | None = None,
) -> Measurement:
    """Time `fn` on `backend` (the CPU when None) and return its samples and statistics.

    Promises: the first call is reported apart as `cold_start_s`; each sample is one block of
    `iterations_per_sample` calls lasting at least `min_sample_s` and at least 1e4 times the
    timer's own overhead; at least `min_samples` samples are taken; sampling stops once the 95%
    CI of the median is within `precision` x median (`stable=True`) or when `max_time_s` of
    sampling has passed or `max_samples` were taken (`stable=False`). Samples are never dropped.
    `iterations` fixes the calls per sample instead (used by later rounds of a case).
    `on_warm()` is called once between warm-up and the first sample (see `run_schedule`).
    """
    if backend is None:
        from backends.cpu import CPUBackend

        backend = CPUBackend()
    timer = backend.timer()
    start = time.perf_counter()
    schedule = run_schedule(
        lambda calls: timer.time_block(fn, calls),
        lambda: timer_overhead_s(timer),
        time_cold_start=time_cold_start,
        warmup_s=warmup_s,
        warmup_iterations=warmup_iterations,
        min_samples=min_samples,
        max_samples=max_samples,
        max_time_s=max_time_s,
        precision=precision,
        min_sample_s=min_sample_s,
        iterations=iterations,
        on_warm=on_warm,
    )
    return summarize_schedule(schedule, total_time_s=time.perf_counter() - start)


def block_size(per_call_s: float, timer_overhead: float, min_sample_s: float) -> int:
    """Calls per sample so that a sample lasts at least `min_sample_s` and at least
    1 / MAX_OVERHEAD_RATIO times the timer's own overhead."""
    floor_s = max(min_sample_s, timer_overhead / MAX_OVERHEAD_RATIO)
    return max(1, math.ceil(floor_s / max(per_call_s, 1e-9)))


def precise_enough(samples: list[float], precision: float) -> bool:
    """Whether the 95% CI of the median of `samples` is within `precision` x median."""
    ci = stats.order_statistic_median_ci(samples)
    return stats.ci_half_width_ratio(ci, statistics.median(samples)) <= precision


def warm_up(
    time_block: Callable[[int], float], warmup_s: float, warmup_iterations: int
) -> tuple[float, int]:
    """Run blocks of growing size through `time_block(calls) -> seconds` for at least
    `warmup_s` and `warmup_iterations` calls; return the fastest seconds per call seen in a
    block (preemption only ever slows a block, so the fastest one sizes sampling blocks that
    reach their floor) and the calls made."""
    done = 0
    block = 1
    spent = 0.0
    per_call = math.inf
    while True:
        elapsed = time_block(block)
        done += block
        spent += elapsed
        per_call = min(per_call, elapsed / block)
        if done >= warmup_iterations and spent >= warmup_s:
            return per_call, done
        remaining = max(warmup_s - spent, 0.0)
        block = max(1, min(block * 2, math.ceil(remaining / max(per_call, 1e-9))))


def summarize(
    samples: list[float],
    *,
    iterations_per_sample: int,
    warmup_iterations: int = 0,
    cold_start_s: float | None = None,
    total_time_s: float = 0.0,
    stable: bool = False,
    sample_rounds: list[int] | None = None,
    precision: float | None = None,
) -> Measurement:
    """The Measurement of raw per-iteration samples: quartiles, CIs, outlier labels.

    `sample_rounds` gives each sample's round (None: all round 0). `median` is
    `stats.median_of_rounds` (the plain median with one round); `q1`/`q3`/`iqr` are of all
    samples. `ci95` is
    `stats.hierarchical_median_ci` (the single-window bootstrap when there is one round),
    `ci95_within_round` the single-window bootstrap over all samples. With several rounds
    and a `precision`, `stable` is whether `ci95`'s half-width is within precision x median
    (the caller's `stable` describes one window only); `stability` is `stats.stability` with
    `ci95`."""
    q1, _, q3 = stats.quartiles(samples)
    iqr = q3 - q1
    labels = list(sample_rounds) if sample_rounds is not None else [0] * len(samples)
    rounds = len(set(labels))
    median = stats.median_of_rounds(samples, labels)
    within = stats.bootstrap_median_ci(samples)
    ci = stats.hierarchical_median_ci(samples, labels) if rounds > 1 else within
    if rounds > 1 and precision is not None:
        stable = stats.ci_half_width_ratio(ci, median) <= precision
    return Measurement(
        samples_s=samples,
        iterations_per_sample=iterations_per_sample,
        warmup_iterations=warmup_iterations,
        cold_start_s=cold_start_s,
        total_time_s=total_time_s,
        median=median,
        mean=statistics.fmean(samples),
        stdev=statistics.stdev(samples) if len(samples) > 1 else 0.0,
        q1=q1,
        q3=q3,
        iqr=iqr,
        ci95=ci,
        ci95_within_round=within,
        stable=stable,
        stability=stats.stability(iqr, median, ci if rounds > 1 else None),
        outliers=stats.tukey_labels(samples),
        sample_rounds=labels,
        rounds=rounds,
    )


def summarize_schedule(schedule: Schedule, total_time_s: float) -> Measurement:
    """The Measurement of a schedule's samples, with its block size, warm-up, cold start and
    stable flag carried over and `total_time_s` as the measurement's wall time."""
    return summarize(
        schedule.samples_s,
        iterations_per_sample=schedule.iterations_per_sample,
        warmup_iterations=schedule.warmup_iterations,
        cold_start_s=schedule.cold_start_s,
        total_time_s=total_time_s,
        stable=schedule.stable,
    )
