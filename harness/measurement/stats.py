"""Statistics of timing samples: pure functions over sequences of floats (no torch, no I/O)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, NamedTuple

import numpy as np

WARN_IQR_RATIO = 0.10
SEVERE_IQR_RATIO = 0.25

OutlierLabel = Literal["", "mild", "severe"]


def quartiles(samples: Sequence[float]) -> tuple[float, float, float]:
    """First quartile, median and third quartile (linear interpolation)."""
    q1, q2, q3 = np.percentile(np.asarray(samples, dtype=float), [25, 50, 75])
    return float(q1), float(q2), float(q3)


def bootstrap_median_ci(
    samples: Sequence[float], confidence: float = 0.95, resamples: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """Percentile-bootstrap confidence interval of the median (degenerate if n < 2)."""
    data = np.asarray(samples, dtype=float)
    if data.size < 2 or np.ptp(data) == 0.0:
        value = float(np.median(data)) if data.size else float("nan")
        return value, value
    from scipy import stats as sps  # imported on use: keeps `bench` start-up fast

    result = sps.bootstrap(
        (data,),
        np.median,
        confidence_level=confidence,
        n_resamples=resamples,
        method="percentile",
        vectorized=True,
        rng=np.random.default_rng(seed),
    )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def bootstrap_quantile_ci(
    samples: Sequence[float],
    quantile: float,
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile-bootstrap confidence interval of the `quantile` (0..1, linear interpolation)
    of the samples (degenerate if n < 2). Wide for tail quantiles of few samples: the p99 of
    100 samples rests on its top two."""
    data = np.asarray(samples, dtype=float)
    if data.size < 2 or np.ptp(data) == 0.0:
        value = float(np.quantile(data, quantile)) if data.size else float("nan")
        return value, value
    from scipy import stats as sps

    def statistic(values: np.ndarray, axis: int = -1) -> np.ndarray:
        return np.quantile(values, quantile, axis=axis)

    result = sps.bootstrap(
        (data,),
        statistic,
        confidence_level=confidence,
        n_resamples=resamples,
        method="percentile",
        vectorized=True,
        rng=np.random.default_rng(seed),
    )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def order_statistic_median_ci(
    samples: Sequence[float], confidence: float = 0.95
) -> tuple[float, float]:
    """Distribution-free confidence interval of the median from order statistics (binomial).

    Cheap enough to evaluate after every sample; slightly conservative for small n.
    """
    data = np.sort(np.asarray(samples, dtype=float))
    n = data.size
    if n < 2:
        value = float(data[0]) if n else float("nan")
        return value, value
    from scipy import stats as sps

    alpha = 1.0 - confidence
    k = int(sps.binom.ppf(alpha / 2.0, n, 0.5))  # P(Binom(n, 1/2) < k) <= alpha / 2
    low, high = max(k - 1, 0), min(n - k, n - 1)
    return float(data[low]), float(data[high])


def ci_half_width_ratio(ci: tuple[float, float], center: float) -> float:
    """Half-width of a confidence interval relative to its center (inf when center is 0)."""
    return (ci[1] - ci[0]) / 2.0 / center if center > 0 else float("inf")


def tukey_labels(samples: Sequence[float]) -> list[OutlierLabel]:
    """Label each sample by Tukey fences: beyond 1.5 IQR 'mild', beyond 3 IQR 'severe'."""
    q1, _, q3 = quartiles(samples)
    iqr = q3 - q1
    labels: list[OutlierLabel] = []
    for value in samples:
        distance = max(q1 - value, value - q3)
        if distance > 3.0 * iqr:
            labels.append("severe")
        elif distance > 1.5 * iqr:
            labels.append("mild")
        else:
            labels.append("")
    return labels


def stability(iqr: float, median: float) -> Literal["ok", "warn", "severe"]:
    """Noise class of a measurement from IQR/median: < 10% ok, < 25% warn, else severe."""
    ratio = iqr / median if median > 0 else float("inf")
    if ratio >= SEVERE_IQR_RATIO:
        return "severe"
    if ratio >= WARN_IQR_RATIO:
        return "warn"
    return "ok"


def bootstrap_median_ratio_ci(
    numerator: Sequence[float],
    denominator: Sequence[float],
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile-bootstrap CI of median(numerator) / median(denominator), resampling the
    two independent sample sets separately (degenerate when either has < 2 samples)."""
    num = np.asarray(numerator, dtype=float)
    den = np.asarray(denominator, dtype=float)
    if num.size == 0 or den.size == 0:
        return float("nan"), float("nan")
    point = float(np.median(num) / np.median(den))
    if num.size < 2 or den.size < 2 or (np.ptp(num) == 0.0 and np.ptp(den) == 0.0):
        return point, point
    from scipy import stats as sps

    def ratio(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
        return np.median(a, axis=axis) / np.median(b, axis=axis)

    result = sps.bootstrap(
        (num, den),
        ratio,
        confidence_level=confidence,
        n_resamples=resamples,
        method="percentile",
        vectorized=True,
        paired=False,
        rng=np.random.default_rng(seed),
    )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


class SampleComparison(NamedTuple):
    """How a new set of timing samples relates to a base set.

    `ratio` is median(new) / median(base) (above 1: new is slower); `ci95` is its bootstrap
    95% confidence interval; `p_value` is the two-sided Mann-Whitney U p-value of the raw
    samples (nan when either side has fewer than 2 samples).
    """

    ratio: float
    ci95: tuple[float, float]
    p_value: float


def compare_samples(
    base: Sequence[float],
    new: Sequence[float],
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> SampleComparison:
    """Ratio of medians new/base with its percentile-bootstrap CI (each side resampled on its
    own) and the Mann-Whitney U p-value. Deterministic for a given seed."""
    if len(base) == 0 or len(new) == 0:
        raise ValueError("compare_samples needs at least one sample on each side")
    ratio = float(
        np.median(np.asarray(new, dtype=float)) / np.median(np.asarray(base, dtype=float))
    )
    if len(base) < 2 or len(new) < 2:
        return SampleComparison(ratio, (ratio, ratio), float("nan"))
    from scipy import stats as sps

    p_value = float(sps.mannwhitneyu(new, base, alternative="two-sided").pvalue)
    ci = bootstrap_median_ratio_ci(new, base, confidence, resamples, seed)
    return SampleComparison(ratio, ci, p_value)


def compare_quantiles(
    base: Sequence[float],
    new: Sequence[float],
    quantile: float,
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> SampleComparison:
    """Like compare_samples for a quantile instead of the median: the ratio
    quantile(new) / quantile(base) with its percentile-bootstrap CI (each side resampled on its
    own) and the Mann-Whitney U p-value of the two sample sets."""
    if len(base) == 0 or len(new) == 0:
        raise ValueError("compare_quantiles needs at least one sample on each side")
    old_q = float(np.quantile(np.asarray(base, dtype=float), quantile))
    new_q = float(np.quantile(np.asarray(new, dtype=float), quantile))
    ratio = new_q / old_q if old_q > 0 else float("inf")
    if len(base) < 2 or len(new) < 2:
        return SampleComparison(ratio, (ratio, ratio), float("nan"))
    from scipy import stats as sps

    p_value = float(sps.mannwhitneyu(new, base, alternative="two-sided").pvalue)

    def statistic(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
        return np.quantile(a, quantile, axis=axis) / np.quantile(b, quantile, axis=axis)

    result = sps.bootstrap(
        (np.asarray(new, dtype=float), np.asarray(base, dtype=float)),
        statistic,
        confidence_level=confidence,
        n_resamples=resamples,
        method="percentile",
        vectorized=True,
        paired=False,
        rng=np.random.default_rng(seed),
    )
    ci = (float(result.confidence_interval.low), float(result.confidence_interval.high))
    return SampleComparison(ratio, ci, p_value)
