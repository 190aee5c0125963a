"""Statistics of timing samples: pure functions over sequences of floats (no torch, no I/O).

Below both the execution stack (measurement) and the presentation stack (analysis, report), so
either uses them without importing the other."""

from __future__ import annotations

import math
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
    return bootstrap_quantile_ci(samples, 0.5, confidence, resamples, seed)


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


ThresholdSide = Literal["above", "within", "undecided"]
"""Where a confidence interval lies against a threshold (`threshold_side`)."""


def threshold_side(ci: tuple[float, float], threshold: float) -> ThresholdSide:
    """Where the interval `ci` = (low, high) lies against `threshold`: "above" when its lower
    bound is above it (low > threshold), "within" when its upper bound is below it
    (high < threshold), else "undecided" (the interval contains the threshold, so the data
    do not say which side the quantity is on). A point estimate without an interval is the
    interval (x, x)."""
    low, high = ci
    if low > threshold:
        return "above"
    if high < threshold:
        return "within"
    return "undecided"


TREND_ALPHA = 0.01
"""A within-round trend counts only with a p-value below this (Kendall's tau)."""
TREND_MIN_CHANGE = 0.10
"""... and only when it moves a sample by at least this fraction of its round's median over
the length of a round (Theil-Sen slope x (samples per round - 1))."""
TREND_MIN_SAMPLES = 3
"""Fewest samples per round (on average) for a within-round trend to be estimated."""


class Trend(NamedTuple):
    """How sample times move with their order within a round (`within_round_trend`)."""

    tau: float
    """Kendall's tau-b of (sample / its round's median) against the sample's position in its
    round, all rounds pooled; +1: every later sample slower."""
    p_value: float
    slope: float
    """Theil-Sen slope of the same: change per sample, as a fraction of the round's median."""
    change: float
    """slope x (median samples per round - 1): how far a round's last sample lies from its
    first, as a fraction of the median."""
    samples: int
    flagged: bool
    """p_value < TREND_ALPHA and |change| >= TREND_MIN_CHANGE."""


def within_round_trend(
    samples: Sequence[float],
    sample_rounds: Sequence[int],
    alpha: float = TREND_ALPHA,
    min_change: float = TREND_MIN_CHANGE,
) -> Trend | None:
    """The trend of sample time against sample order within rounds: each sample is divided
    by its round's median (so a machine that ran at another speed in another round, what the
    yardsticks read before each round, and any drift between rounds do not count), then
    Kendall's tau-b and the Theil-Sen slope of those against the position in the round, the
    rounds pooled. A step whose cost grows with the training state (denormals, a cache that
    fills) trends; a steady step does not. None with fewer than TREND_MIN_SAMPLES samples per
    round on average or with constant samples."""
    groups = [g for g in round_groups(samples, sample_rounds) if g.size]
    total = sum(g.size for g in groups)
    if not groups or total < TREND_MIN_SAMPLES * len(groups):
        return None
    position = np.concatenate([np.arange(g.size, dtype=float) for g in groups])
    relative = np.concatenate([g / np.median(g) for g in groups])
    if np.ptp(relative) == 0 or np.ptp(position) == 0:
        return None
    from scipy import stats as sps

    tau = sps.kendalltau(position, relative)
    slope = float(sps.theilslopes(relative, position).slope)
    change = slope * (float(np.median([g.size for g in groups])) - 1.0)
    p_value = float(tau.pvalue)
    flagged = p_value < alpha and abs(change) >= min_change
    return Trend(float(tau.statistic), p_value, slope, change, total, bool(flagged))


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


def stability(
    iqr: float, median: float, ci: tuple[float, float] | None = None
) -> Literal["ok", "warn", "severe"]:
    """Noise class of a measurement: the worse of IQR/median (< 10% ok, < 25% warn, else
    severe) and, when `ci` is given, twice its half-width over the median (the same cut-offs,
    so a CI of +-5% warns): spread within the samples, or drift between rounds."""
    ratio = iqr / median if median > 0 else float("inf")
    if ci is not None:
        ratio = max(ratio, 2.0 * ci_half_width_ratio(ci, median))
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


def round_groups(samples: Sequence[float], sample_rounds: Sequence[int]) -> list[np.ndarray]:
    """The samples split by round, in round order (rounds without samples are left out).

    `sample_rounds` is parallel to `samples` (the round each sample was taken in); when it is
    empty every sample counts as round 0. Raises ValueError when the lengths differ."""
    data = np.asarray(samples, dtype=float)
    if len(sample_rounds) == 0:
        return [data] if data.size else []
    labels = np.asarray(sample_rounds, dtype=int)
    if labels.size != data.size:
        raise ValueError(
            f"sample_rounds has {labels.size} entries for {data.size} samples; they must match"
        )
    return [data[labels == r] for r in np.unique(labels)]


def median_of_rounds(samples: Sequence[float], sample_rounds: Sequence[int]) -> float:
    """The headline of a measurement taken in rounds: the median over rounds of each round's
    median; with one round (or none labelled), the median of the samples.

    Every round counts once, however many samples it took. Rounds have a time budget, so a
    round in a slow state of the machine takes fewer samples: the median of the pooled samples
    leans toward the fast rounds (round medians 4.9, 6.0, 6.2, 3.4, 3.4 ms gave a pooled median
    of 3.55 ms), and looks tighter than the machine was. Empty -> nan."""
    groups = round_groups(samples, sample_rounds)
    if not groups:
        return float("nan")
    return float(np.median([np.median(group) for group in groups]))


def _t_interval_log(values: np.ndarray, confidence: float) -> tuple[float, float]:
    """Student-t interval of exp(mean(log values)) from the spread of `values` (>= 2, > 0)."""
    from scipy import stats as sps

    logs = np.log(values)
    half = float(sps.t.ppf(0.5 + confidence / 2.0, logs.size - 1)) * float(
        np.std(logs, ddof=1) / np.sqrt(logs.size)
    )
    center = float(np.mean(logs))
    return float(np.exp(center - half)), float(np.exp(center + half))


def _resample_within(
    groups: list[np.ndarray], chosen: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """For each bootstrap replicate b and slot s, the samples of round chosen[b, s] drawn
    with replacement (as many as that round has), NaN-padded to the largest round:
    shape (B, S, largest round)."""
    sizes = np.array([g.size for g in groups])
    width = int(sizes.max())
    padded = np.full((len(groups), width), np.nan)
    for i, group in enumerate(groups):
        padded[i, : group.size] = group
    n = sizes[chosen]  # (B, S)
    uniform = rng.random((*chosen.shape, width), dtype=np.float32)
    picks = np.minimum((uniform * n[..., None]).astype(int), n[..., None] - 1)
    drawn = padded[chosen[..., None], picks]
    drawn[np.arange(width)[None, None, :] >= n[..., None]] = np.nan
    return drawn


def _nan_padded_median(values: np.ndarray) -> np.ndarray:
    """np.nanmedian over the last axis, for rows whose NaNs are padding (several times
    faster: one sort, NaNs sort last)."""
    ordered = np.sort(values, axis=-1)
    counts = np.sum(~np.isnan(values), axis=-1, keepdims=True)
    low = np.take_along_axis(ordered, (counts - 1) // 2, axis=-1)
    high = np.take_along_axis(ordered, counts // 2, axis=-1)
    return ((low + high) / 2.0)[..., 0]


def hierarchical_median_ci(
    samples: Sequence[float],
    sample_rounds: Sequence[int],
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> tuple[float, float]:
    """Confidence interval of the median of samples taken in rounds, honest about drift
    between rounds.

    Definition: with R >= 2 rounds, the wider (union) of two intervals:
    - the two-level percentile bootstrap: draw R rounds with replacement, then within each
      drawn round draw its samples with replacement, and take the median over drawn rounds
      of their medians (`median_of_rounds`); the interval is the (1-c)/2 and (1+c)/2
      quantiles of that statistic;
    - a Student-t interval (R-1 degrees of freedom) of exp(mean(log m_r)) over the per-round
      medians m_r.
    The bootstrap alone undercovers with few rounds (a percentile bootstrap over R = 5
    values behaves like a z-interval with the R-1 variance: ~85% coverage measured on
    synthetic drift, tests/unit/test_rounds_stats.py); the t-interval is exact for log-normal
    round effects and keeps coverage near the nominal level at R = 3..5. The union is finally
    widened, if needed, to contain the point estimate, `median_of_rounds`.

    Edge cases: no samples -> (nan, nan); one round -> the within-round bootstrap
    (`bootstrap_median_ci`), which cannot see drift; all samples equal -> (value, value);
    rounds with a single sample are used as they are."""
    groups = round_groups(samples, sample_rounds)
    data = np.asarray(samples, dtype=float)
    if data.size == 0:
        return float("nan"), float("nan")
    if len(groups) < 2:
        return bootstrap_median_ci(samples, confidence, resamples, seed)
    point = median_of_rounds(samples, sample_rounds)
    if np.ptp(data) == 0.0:
        return point, point
    rng = np.random.default_rng(seed)
    chosen = rng.integers(0, len(groups), size=(resamples, len(groups)))
    medians = np.median(_nan_padded_median(_resample_within(groups, chosen, rng)), axis=1)
    alpha = 1.0 - confidence
    low, high = np.quantile(medians, [alpha / 2.0, 1.0 - alpha / 2.0])
    t_low, t_high = _t_interval_log(np.array([np.median(g) for g in groups]), confidence)
    return min(float(low), t_low, point), max(float(high), t_high, point)


class PairedRatio(NamedTuple):
    """A ratio between two cases measured in the same rounds (e.g. t_train / t_infer).

    `value` is the median over rounds of median(numerator in round r) / median(denominator in
    round r); `ci95` its confidence interval; `rounds` how many rounds both sides share."""

    value: float
    ci95: tuple[float, float]
    rounds: int


def paired_round_ratio(
    numerator: Sequence[float],
    numerator_rounds: Sequence[int],
    denominator: Sequence[float],
    denominator_rounds: Sequence[int],
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> PairedRatio:
    """The per-round paired ratio of medians and its CI from the between-round variation.

    Only rounds present on both sides count. With >= 2 shared rounds the CI is, like
    `hierarchical_median_ci`, the union of (a) the two-level bootstrap: draw shared rounds
    with replacement (the same round for both sides: the pairing), redraw each side's
    samples within the round, take the median over drawn rounds of the per-round ratios, and
    (b) the Student-t interval of the geometric mean of the per-round ratios; widened to
    contain `value`. With fewer than 2 shared rounds (e.g. single-round files) the ratio is
    median(numerator) / median(denominator) with `bootstrap_median_ratio_ci`, which treats
    the two sides as independent samples. Empty sides give nan."""
    num_groups = dict(_labelled_groups(numerator, numerator_rounds))
    den_groups = dict(_labelled_groups(denominator, denominator_rounds))
    shared = sorted(set(num_groups) & set(den_groups))
    if len(shared) < 2:
        low, high = bootstrap_median_ratio_ci(numerator, denominator, confidence, resamples, seed)
        num, den = np.asarray(numerator, dtype=float), np.asarray(denominator, dtype=float)
        value = float(np.median(num) / np.median(den)) if num.size and den.size else float("nan")
        return PairedRatio(value, (low, high), len(shared))
    nums = [num_groups[r] for r in shared]
    dens = [den_groups[r] for r in shared]
    per_round = np.array([np.median(a) / np.median(b) for a, b in zip(nums, dens, strict=True)])
    value = float(np.median(per_round))
    rng = np.random.default_rng(seed)
    chosen = rng.integers(0, len(shared), size=(resamples, len(shared)))
    top = _nan_padded_median(_resample_within(nums, chosen, rng))
    bottom = _nan_padded_median(_resample_within(dens, chosen, rng))
    boot = np.median(top / bottom, axis=1)
    alpha = 1.0 - confidence
    low, high = np.quantile(boot, [alpha / 2.0, 1.0 - alpha / 2.0])
    if np.ptp(per_round) == 0.0:
        t_low = t_high = value
    else:
        t_low, t_high = _t_interval_log(per_round, confidence)
    return PairedRatio(
        value, (min(float(low), t_low, value), max(float(high), t_high, value)), len(shared)
    )


def _labelled_groups(
    samples: Sequence[float], sample_rounds: Sequence[int]
) -> list[tuple[int, np.ndarray]]:
    data = np.asarray(samples, dtype=float)
    labels = np.asarray(sample_rounds, dtype=int) if len(sample_rounds) else np.zeros(data.size)
    if labels.size != data.size:
        raise ValueError(
            f"sample_rounds has {labels.size} entries for {data.size} samples; they must match"
        )
    return [(int(r), data[labels == r]) for r in np.unique(labels)]


class RoundComparison(NamedTuple):
    """How a new measurement relates to a base one, judged by the between-round variation.

    `ratio` is the ratio of the runs' `median_of_rounds`; `ci95` its 95% CI; `p_value` the
    two-sided Welch t-test of the per-round log-medians; `floor` the between-round noise
    floor: the relative half-width exp(t * SE) - 1 of the ratio's t-interval, i.e. the
    smallest change these two runs can resolve."""

    ratio: float
    ci95: tuple[float, float]
    p_value: float
    floor: float


def compare_rounds(
    base: Sequence[float],
    base_rounds: Sequence[int],
    new: Sequence[float],
    new_rounds: Sequence[int],
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> RoundComparison | None:
    """Compare two measurements taken in rounds; None unless each has >= 2 rounds (then use
    `compare_samples`).

    With per-round medians a_i (base, R rounds) and b_j (new, S rounds), in logs: the
    difference of means d = mean(log b) - mean(log a) has standard error
    SE = sqrt(var(log a) / R + var(log b) / S), and Welch-Satterthwaite degrees of freedom
    give the t quantile. The CI is the union of exp(log(ratio) +- t * SE) x ratio and the
    single-window bootstrap CI (`bootstrap_median_ratio_ci`), so it is never narrower than
    the old one; the p-value is Welch's t-test on the log-medians (rounds, not samples, are
    the independent units: samples within a round share the machine's state)."""
    base_groups = round_groups(base, base_rounds)
    new_groups = round_groups(new, new_rounds)
    if len(base_groups) < 2 or len(new_groups) < 2:
        return None
    from scipy import stats as sps

    ratio = median_of_rounds(new, new_rounds) / median_of_rounds(base, base_rounds)
    log_a = np.log([np.median(g) for g in base_groups])
    log_b = np.log([np.median(g) for g in new_groups])
    var_a, var_b = np.var(log_a, ddof=1) / log_a.size, np.var(log_b, ddof=1) / log_b.size
    se = float(np.sqrt(var_a + var_b))
    window = bootstrap_median_ratio_ci(new, base, confidence, resamples, seed)
    if se == 0.0:
        same = bool(np.mean(log_b) == np.mean(log_a))
        return RoundComparison(ratio, window, 1.0 if same else 0.0, 0.0)
    df = (var_a + var_b) ** 2 / (var_a**2 / (log_a.size - 1) + var_b**2 / (log_b.size - 1))
    quantile = float(sps.t.ppf(0.5 + confidence / 2.0, df))
    half = quantile * se
    p_value = float(sps.ttest_ind(log_b, log_a, equal_var=False).pvalue)
    low = min(ratio * float(np.exp(-half)), window[0])
    high = max(ratio * float(np.exp(half)), window[1])
    return RoundComparison(ratio, (low, high), p_value, float(np.expm1(half)))


def relative_round_medians(
    samples: Sequence[float], sample_rounds: Sequence[int], reference: Sequence[float]
) -> list[float]:
    """Each round's median divided by that round's reference reading: `reference[r]` belongs
    to round label r (labels are 0, 1, ...). Rounds without a positive reference reading are
    left out; the result is in round order."""
    return [
        float(np.median(group)) / reference[label]
        for label, group in _labelled_groups(samples, sample_rounds)
        if 0 <= label < len(reference) and reference[label] > 0
    ]


def compare_per_round(base: Sequence[float], new: Sequence[float]) -> RoundComparison | None:
    """`compare_rounds` of two series holding one value per round (per-round medians or
    readings); None unless each has >= 2 values."""
    return compare_rounds(base, range(len(base)), new, range(len(new)))


DEFAULT_THRESHOLD = 0.10
"""The smallest relative change a comparison of two runs calls a change by default. Two
runs' rounds cannot see the run-to-run drift of a shared host (minutes apart, other
tenants): in three sessions of six back-to-back runs on a 2-core cloud VM, neighbouring runs
moved a case's median by 5-40% (mlp small train 13.7 then 18.8 ms: one case in a slower state
for most of a run) while each pair's between-round floor read 4-22%.
asv's default factor is the same 1.1; kept history (two or more earlier runs) then
measures the drift for real, and quiet dedicated machines can ask for less (--threshold)."""


def history_floor(medians: Sequence[float], minimum_runs: int = 2) -> float | None:
    """The noise floor from earlier runs of one case on one machine: the half-width of a 95%
    prediction band for the ratio of two runs' medians, exp(t * sqrt(2) * s) - 1, where s is
    the sample standard deviation of their log-medians (the ratio of two runs scatters
    sqrt(2) times as much as one run) and t the Student quantile with n - 1 degrees of
    freedom (s from few runs is itself uncertain: t is 12.7 for 2 runs, 4.3 for 3, 2.6 for 6,
    tending to 1.96). None with fewer than `minimum_runs` (at least 2) runs."""
    values = np.asarray(medians, dtype=float)
    if values.size < max(minimum_runs, 2):
        return None
    from scipy import stats as sps

    quantile = float(sps.t.ppf(0.975, values.size - 1))
    return float(np.expm1(quantile * np.sqrt(2.0) * np.std(np.log(values), ddof=1)))


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


def product_ci(
    a: float, a_ci: tuple[float, float], b: float, b_ci: tuple[float, float]
) -> tuple[float, float]:
    """An approximate CI of the product a x b of two independent positive estimates: their
    log-scale half-widths added in quadrature (the delta method on log a + log b), each side
    separately, around log(a x b). Degenerate (a x b, a x b) when both CIs are points."""
    if a <= 0 or b <= 0 or min(a_ci) <= 0 or min(b_ci) <= 0:
        return a * b, a * b
    center = math.log(a) + math.log(b)
    low = math.hypot(math.log(a) - math.log(a_ci[0]), math.log(b) - math.log(b_ci[0]))
    high = math.hypot(math.log(a_ci[1]) - math.log(a), math.log(b_ci[1]) - math.log(b))
    return math.exp(center - low), math.exp(center + high)


def first_at_or_below(
    steps: Sequence[int], values: Sequence[float | None], target: float
) -> int | None:
    """The first step whose value is at or below `target` (values None are not finite and
    never reach it); None when no step does."""
    for step, value in zip(steps, values, strict=False):
        if value is not None and value <= target:
            return step
    return None


def jump_ratios(values: Sequence[float | None], window: int) -> list[float | None]:
    """values[t] / median(values[t-window:t]) for each t >= window whose window holds at
    least window/2 known positive values (None elsewhere): how far a step jumps above the
    running median of the steps before it."""
    out: list[float | None] = []
    for t, value in enumerate(values):
        if t < window or value is None:
            out.append(None)
            continue
        known = [v for v in values[t - window : t] if v is not None and v > 0]
        out.append(value / float(np.median(known)) if len(known) * 2 >= window else None)
    return out


def rank_trend(values: Sequence[float]) -> float:
    """Spearman's rank correlation of values against their order (nan for < 3 values or a
    constant series): +1 for a series that only grows."""
    if len(values) < 3 or np.ptp(np.asarray(values, dtype=float)) == 0.0:
        return float("nan")
    from scipy import stats as sps

    return float(sps.spearmanr(np.arange(len(values)), values).statistic)
