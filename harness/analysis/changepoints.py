"""Change-point detection in a history of medians: pure functions (numpy only, no I/O).

The method is optimal partitioning (the exact penalised segmentation that PELT speeds up) on a
piecewise-constant Gaussian model. The noise level is estimated robustly from the series
itself (the median absolute deviation of successive differences, which a few steps barely
move), so the penalty scales with the data; a step is kept only when the levels on either
side differ by at least `min_relative_change`. This is the same idea as asv's step detection
(a penalised piecewise-constant fit) with an L2 cost.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

_MAD_TO_SIGMA = 1.4826


class ChangePoint(NamedTuple):
    """A step at `index`: series[index] is the first value of the new level."""

    index: int
    before: float
    """Median of the segment before the step."""
    after: float
    """Median of the segment from the step on."""

    @property
    def relative_change(self) -> float:
        return self.after / self.before - 1.0 if self.before else float("inf")


def noise_sigma(values: Sequence[float]) -> float:
    """Robust estimate of the point-to-point noise (standard deviation) of a series."""
    data = np.asarray(values, dtype=float)
    if data.size < 3:
        return 0.0
    diffs = np.diff(data)
    return float(_MAD_TO_SIGMA * np.median(np.abs(diffs - np.median(diffs))) / np.sqrt(2.0))


def optimal_partition(values: Sequence[float], penalty: float, min_size: int = 2) -> list[int]:
    """Indices where a new segment starts, minimising the sum of squared deviations from each
    segment's mean plus `penalty` per segment; every segment has at least `min_size` points.

    Exact dynamic programming (Jackson et al., 2005), O(n^2) vectorised: a history has at most
    a few thousand runs.
    """
    data = np.asarray(values, dtype=float)
    n = data.size
    if n < 2 * min_size:
        return []
    s1 = np.concatenate(([0.0], np.cumsum(data)))
    s2 = np.concatenate(([0.0], np.cumsum(data * data)))
    best = np.full(n + 1, np.inf)
    best[0] = -penalty
    last = np.zeros(n + 1, dtype=int)
    for end in range(min_size, n + 1):
        starts = np.arange(0, end - min_size + 1)
        lengths = end - starts
        sums = s1[end] - s1[starts]
        costs = s2[end] - s2[starts] - sums * sums / lengths
        totals = best[starts] + costs + penalty
        choice = int(np.argmin(totals))
        best[end] = totals[choice]
        last[end] = starts[choice]
    changes: list[int] = []
    end = n
    while end > 0:
        start = int(last[end])
        if start > 0:
            changes.append(start)
        end = start
    return sorted(changes)


def detect_change_points(
    values: Sequence[float],
    penalty_factor: float = 5.0,
    min_size: int = 2,
    min_relative_change: float = 0.05,
) -> list[ChangePoint]:
    """Steps in a series of medians (oldest first).

    The penalty per step is `penalty_factor * sigma^2 * log(n)` with sigma the robust noise
    estimate; steps smaller than `min_relative_change` of the level are dropped. A flat or
    pure-noise series yields no change point.
    """
    data = np.asarray(values, dtype=float)
    n = data.size
    if n < 2 * min_size or not np.all(np.isfinite(data)):
        return []
    scale = float(np.median(np.abs(data))) or 1.0
    sigma = max(noise_sigma(data), 1e-6 * scale)
    penalty = penalty_factor * sigma * sigma * max(np.log(n), 1.0)
    starts = optimal_partition(data, penalty, min_size=min_size)
    bounds = [0, *starts, n]
    found: list[ChangePoint] = []
    for i, start in enumerate(starts, start=1):
        before = float(np.median(data[bounds[i - 1] : start]))
        after = float(np.median(data[start : bounds[i + 1]]))
        point = ChangePoint(start, before, after)
        if abs(point.relative_change) >= min_relative_change:
            found.append(point)
    return found
