"""Change-point detection on synthetic series: a step is found, noise and flat give none."""

import itertools

import numpy as np
import pytest

from harness.analysis.changepoints import detect_change_points, noise_sigma, optimal_partition


def noisy(level: float, n: int, rng: np.random.Generator, noise: float = 0.03) -> np.ndarray:
    return level * (1.0 + noise * rng.standard_normal(n))


def test_a_20_percent_step_in_noise_is_found_where_it_is_in_98_percent_of_series() -> None:
    found = 0
    for seed in range(1000):
        rng = np.random.default_rng(seed)
        series = np.concatenate([noisy(1.0, 12, rng), noisy(1.2, 12, rng)])
        points = detect_change_points(series)
        found += len(points) == 1 and points[0].index in (11, 12, 13)
    assert found >= 980


def test_a_found_step_reports_its_size() -> None:
    rng = np.random.default_rng(0)
    series = np.concatenate([noisy(1.0, 12, rng), noisy(1.2, 12, rng)])
    (point,) = detect_change_points(series)
    assert point.relative_change == pytest.approx(0.2, abs=0.05)


def test_two_steps_are_both_found() -> None:
    rng = np.random.default_rng(1)
    series = np.concatenate([noisy(1.0, 10, rng), noisy(1.3, 10, rng), noisy(0.9, 10, rng)])
    assert [p.index for p in detect_change_points(series)] == [10, 20]


def test_pure_noise_yields_a_change_point_in_about_1_percent_of_series_at_most() -> None:
    false_alarms = sum(
        bool(detect_change_points(noisy(1.0, 30, np.random.default_rng(seed))))
        for seed in range(1000)
    )
    assert false_alarms <= 10


@pytest.mark.parametrize(
    "series",
    [[1.0] * 20, [2.0], [], [1.0, 2.0, 1.0], [1.0, float("nan"), 1.0, 1.0, 1.0]],
)
def test_flat_short_or_invalid_series_have_none(series: list[float]) -> None:
    assert detect_change_points(series) == []


def test_a_noise_free_step_is_found() -> None:
    assert [p.index for p in detect_change_points([1.0] * 5 + [2.0] * 5)] == [5]


def test_small_steps_below_the_relative_minimum_are_dropped() -> None:
    rng = np.random.default_rng(3)
    series = np.concatenate([noisy(1.0, 15, rng, 0.001), noisy(1.02, 15, rng, 0.001)])
    assert detect_change_points(series) == []
    assert [p.index for p in detect_change_points(series, min_relative_change=0.01)] == [15]


def test_noise_estimate_ignores_a_step_and_partition_respects_min_size() -> None:
    rng = np.random.default_rng(4)
    series = np.concatenate([noisy(1.0, 100, rng, 0.01), noisy(2.0, 100, rng, 0.005)])
    assert noise_sigma(series) == pytest.approx(0.01, rel=0.25)
    starts = optimal_partition([0.0, 0.0, 0.0, 10.0, 0.0, 0.0, 0.0], penalty=0.1, min_size=2)
    bounds = [0, *starts, 7]
    assert starts and all(b - a >= 2 for a, b in itertools.pairwise(bounds))
    assert optimal_partition([0.0, 10.0, 0.0], penalty=0.1, min_size=2) == []
