import numpy as np
import pytest

from harness import stats


def test_quartiles_match_numpy() -> None:
    data = [5.0, 1.0, 3.0, 2.0, 4.0]
    assert stats.quartiles(data) == (2.0, 3.0, 4.0)


@pytest.mark.parametrize("n", [6, 15, 60])
def test_order_statistic_ci_covers_the_true_median_at_least_95_percent(n: int) -> None:
    rng = np.random.default_rng(n)
    true_median = np.log(2.0)  # exponential(1)
    hits = sum(
        lo <= true_median <= hi
        for lo, hi in (stats.order_statistic_median_ci(rng.exponential(1.0, n)) for _ in range(800))
    )
    assert hits / 800 >= 0.93


def test_bootstrap_ci_brackets_the_sample_median_and_shrinks_with_n() -> None:
    rng = np.random.default_rng(0)
    small = rng.normal(1.0, 0.1, 20)
    large = rng.normal(1.0, 0.1, 400)
    lo_s, hi_s = stats.bootstrap_median_ci(small)
    lo_l, hi_l = stats.bootstrap_median_ci(large)
    assert lo_s <= np.median(small) <= hi_s
    assert (hi_l - lo_l) < (hi_s - lo_s)


def test_bootstrap_ci_of_constant_samples_is_a_point() -> None:
    assert stats.bootstrap_median_ci([2.0] * 10) == (2.0, 2.0)


def test_tukey_labels_mark_but_keep_outliers() -> None:
    data = [1.0, 1.01, 0.99, 1.0, 1.02, 0.98, 1.05, 1.3]
    labels = stats.tukey_labels(data)
    assert len(labels) == len(data)
    assert labels[-1] == "severe"
    assert labels[:6] == [""] * 6


def test_stability_thresholds() -> None:
    assert stats.stability(0.05, 1.0) == "ok"
    assert stats.stability(0.10, 1.0) == "warn"
    assert stats.stability(0.25, 1.0) == "severe"
