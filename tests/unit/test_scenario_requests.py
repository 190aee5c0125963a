"""Request lengths, arrival schedules and the max-rate search: pure, seeded, no device."""

from __future__ import annotations

import numpy as np
import pytest

from harness.results.config import LengthSpec, ScenarioSettings
from harness.results.schema import Percentiles, ScenarioPoint
from harness.scenarios.requests import draw_lengths, poisson_arrivals
from harness.scenarios.search import search_max_rate
from harness.scenarios.summary import judge


def test_same_seed_gives_the_same_lengths_and_arrivals() -> None:
    spec = LengthSpec(kind="lognormal", input_len=20, output_len=10)
    assert draw_lengths(spec, 64, 50, seed=3, stream=0) == draw_lengths(spec, 64, 50, 3, 0)
    assert draw_lengths(spec, 64, 50, 3, 0) != draw_lengths(spec, 64, 50, 4, 0)
    assert poisson_arrivals(10.0, 50, 3, 0) == poisson_arrivals(10.0, 50, 3, 0)
    assert poisson_arrivals(10.0, 50, 3, 0) != poisson_arrivals(10.0, 50, 3, 1)


@pytest.mark.parametrize("kind", ["fixed", "uniform", "lognormal"])
def test_lengths_follow_their_distribution_and_fit_the_cache(kind: str) -> None:
    drawn = draw_lengths(LengthSpec(kind=kind, input_len=24, output_len=12), 64, 2000, 0, 0)
    inputs, outputs = np.array(drawn.input_len), np.array(drawn.output_len)
    assert (inputs >= 1).all() and (outputs >= 1).all()
    assert (inputs + outputs <= 64).all()
    if kind == "fixed":
        assert set(inputs) == {24} and set(outputs) == {12}
    elif kind == "uniform":
        assert inputs.min() >= 12 and inputs.max() <= 36
    else:  # long-tailed: median near the value, a tail well above it
        assert 20 <= np.median(inputs) <= 28 and inputs.max() > 2 * 24


def test_zero_lengths_come_from_the_sequence_length() -> None:
    drawn = draw_lengths(LengthSpec(kind="fixed"), 128, 3, 0, 0)
    assert drawn.input_len == [32, 32, 32] and drawn.output_len == [16, 16, 16]


def test_poisson_arrivals_have_the_asked_rate() -> None:
    arrivals = np.array(poisson_arrivals(200.0, 4000, seed=1, stream=0))
    assert (np.diff(arrivals) > 0).all()
    assert 4000 / arrivals[-1] == pytest.approx(200.0, rel=0.05)
    with pytest.raises(ValueError, match="must be positive"):
        poisson_arrivals(0.0, 10, 0, 0)


def _queue_point(rate: float, capacity: float) -> ScenarioPoint:
    """A server point whose p99 latency follows an M/M/1-like curve 1 / (capacity - rate)."""
    p99 = 1.0 / (capacity - rate) if rate < capacity else 1e9
    stats = Percentiles(
        p50=p99 / 4, p90=p99 / 2, p99=p99, p50_ci95=(0, 1), p90_ci95=(0, 1), p99_ci95=(p99, p99)
    )
    return ScenarioPoint(
        scenario="server",
        target_rate=rate,
        requests=1,
        duration_s=1.0,
        achieved_rate=rate,
        arrival_s=[0.0],
        latency_s=[p99],
        percentiles={"latency": stats},
    )


def test_search_bisects_to_the_rate_where_p99_meets_the_target() -> None:
    # p99 = 1 / (100 - rate) <= 0.05 s  <=>  rate <= 80 req/s.
    def measure(rate: float) -> ScenarioPoint:
        return judge(_queue_point(rate, 100.0), {"latency": 0.05})

    outcome = search_max_rate(measure, 40.0, 99.0, steps=12, time_budget_s=60.0)
    assert outcome.max_rate == pytest.approx(80.0, rel=0.01)
    assert [p.target_rate for p in outcome.points[:2]] == [40.0, 99.0]
    assert "stopped by 12 bisection steps" in outcome.note


def test_search_below_single_stream_and_when_nothing_meets_the_target() -> None:
    def measure(rate: float) -> ScenarioPoint:
        return judge(_queue_point(rate, 100.0), {"latency": 0.05})

    below = search_max_rate(measure, 90.0, 99.0, steps=10, time_budget_s=60.0)
    assert below.max_rate == pytest.approx(80.0, rel=0.02)
    assert "below the single-stream throughput" in below.note

    def hopeless(rate: float) -> ScenarioPoint:
        return judge(_queue_point(rate, 1.0), {"latency": 0.05})

    none = search_max_rate(hopeless, 90.0, 99.0, steps=10, time_budget_s=60.0)
    assert none.max_rate is None and "no rate met the targets" in none.note


def test_search_takes_the_offline_throughput_when_it_meets_the_target() -> None:
    def measure(rate: float) -> ScenarioPoint:
        return judge(_queue_point(rate, 1000.0), {"latency": 0.05})

    outcome = search_max_rate(measure, 40.0, 99.0, steps=5, time_budget_s=60.0)
    assert outcome.max_rate == 99.0 and "upper bound" in outcome.note


def test_search_stops_when_the_time_budget_is_spent() -> None:
    def measure(rate: float) -> ScenarioPoint:
        return judge(_queue_point(rate, 100.0), {"latency": 0.05})

    outcome = search_max_rate(measure, 40.0, 99.0, steps=50, time_budget_s=0.0)
    assert len(outcome.points) == 2 and "time budget" in outcome.note


def test_preset_settings_fill_every_default() -> None:
    filled = ScenarioSettings(requests=30).for_preset("tiny")
    assert filled.requests == 30 and filled.targets is not None
    assert None not in (filled.max_wait_s, filled.search_steps, filled.time_budget_s)
