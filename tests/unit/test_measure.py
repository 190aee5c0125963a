import random
import time

import torch

from backends.cpu import CPUBackend
from harness import measure
from harness.measurement.timing import run_schedule, summarize


def test_measure_returns_requested_minimum_with_statistics_of_its_samples() -> None:
    """Block sizing is checked on a deterministic clock (test_schedule_stops_on_precision...):
    on a real, shared machine the length of a block depends on what else runs."""
    a = torch.randn(64, 64)
    m = measure(lambda: a @ a, min_samples=12, max_time_s=0.3, warmup_s=0.01)
    assert m.n >= 12
    assert m.iterations_per_sample >= 1
    assert m.ci95[0] <= m.median <= m.ci95[1]
    assert len(m.outliers) == m.n


def test_cold_start_is_timed_apart_from_the_samples() -> None:
    calls = {"n": 0}

    def first_call_slow() -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            time.sleep(0.05)

    m = measure(first_call_slow, CPUBackend(), min_samples=5, max_time_s=0.1, warmup_s=0.0)
    assert m.cold_start_s is not None and m.cold_start_s >= 0.05
    assert max(m.samples_s) < 0.01


def test_budget_exhausted_marks_unstable() -> None:
    rng = random.Random(0)

    def noisy() -> None:
        # uniformly 0.2-2 ms per call: the CI of the median cannot reach 0.1% in 0.2 s
        time.sleep(rng.uniform(0.0002, 0.002))

    m = measure(noisy, precision=0.001, max_time_s=0.2, min_samples=5, warmup_s=0.0)
    assert not m.stable


def test_summarize_keeps_every_sample() -> None:
    samples = [1.0, 1.1, 0.9, 5.0, 1.0]
    m = summarize(samples, iterations_per_sample=3)
    assert m.samples_s == samples
    assert m.outliers[3] == "severe"
    assert m.median == 1.0


SCHEDULE = {
    "warmup_s": 0.0,
    "warmup_iterations": 2,
    "min_samples": 5,
    "max_samples": 50,
    "max_time_s": 1.0,
    "precision": 0.01,
    "min_sample_s": 1e-3,
}


def test_schedule_stops_on_precision_with_the_samples_it_was_given() -> None:
    blocks: list[int] = []

    def time_block(calls: int) -> float:
        blocks.append(calls)
        return calls * 1e-4

    schedule = run_schedule(time_block, lambda: 0.0, **SCHEDULE)
    assert schedule.cold_start_s == 1e-4 and blocks[0] == 1
    assert schedule.iterations_per_sample == 10  # 1 ms blocks of 0.1 ms calls
    assert schedule.stable and schedule.samples_s == [1e-4] * 5


def test_schedule_stops_on_the_time_the_sample_function_reports() -> None:
    noise = random.Random(0)
    reported: list[float] = []

    def take_sample(calls: int, sampling_start: float) -> tuple[float, float]:
        reported.append(float(len(reported)))  # a clock other processes agreed on
        return noise.uniform(1.0, 2.0), reported[-1]

    settings = {**SCHEDULE, "max_time_s": 7.0}
    schedule = run_schedule(
        lambda calls: 1e-3 * calls, lambda: 0.0, take_sample=take_sample, **settings
    )
    assert not schedule.stable and len(schedule.samples_s) == 8  # reported 7.0 at sample 8
