"""The sampling loop's `on_warm` hook runs once, after cold start and warm-up and before the
first sample, so a meter started there (energy) sees only the sampled steps."""

from __future__ import annotations

from harness.measurement.timing import measure, run_schedule
from tests.unit.test_measure import SCHEDULE


def test_on_warm_runs_once_between_warm_up_and_sampling() -> None:
    events: list[str] = []

    def time_block(calls: int) -> float:
        events.append(f"block {calls}")
        return calls * 1e-4

    schedule = run_schedule(
        time_block, lambda: 0.0, **SCHEDULE, on_warm=lambda: events.append("warm")
    )
    assert events.count("warm") == 1
    warm = events.index("warm")
    # before: the cold start (1 call) and the warm-up blocks; after: only sampling blocks
    assert events[0] == "block 1" and warm >= 2
    sampled = events[warm + 1 :]
    assert len(sampled) == len(schedule.samples_s)
    assert all(e == f"block {schedule.iterations_per_sample}" for e in sampled)


def test_measure_passes_on_warm_through() -> None:
    calls: list[int] = []
    warm_at: list[int] = []
    measurement = measure(
        lambda: calls.append(1),
        warmup_s=0.0,
        warmup_iterations=3,
        min_samples=3,
        max_samples=3,
        on_warm=lambda: warm_at.append(len(calls)),
    )
    assert len(warm_at) == 1
    assert warm_at[0] >= 1 + 3  # cold start and warm-up done
    assert len(calls) - warm_at[0] == 3 * measurement.iterations_per_sample
