"""The max-rate search: the highest Poisson arrival rate whose p99s meet the targets.

Bisection on a log scale between the single-stream throughput (what one request at a time
sustains) and the offline throughput (what full batches sustain), a fixed number of steps,
stopped early when the time budget is spent. It assumes that p99 latency grows with the rate
(true of a queue; measured, not enforced). When even the single-stream throughput misses the
targets it brackets below it once (down to 1/8); when the offline throughput meets them,
that is the answer (no higher rate is sustainable).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from pydantic import BaseModel

from harness.results.schema import ScenarioPoint

LOW_FACTOR = 8.0
"""How far below the single-stream throughput the search looks when that misses the target."""


class SearchOutcome(BaseModel):
    """Every rate measured (in order), the highest that met the targets, and how it stopped."""

    points: list[ScenarioPoint]
    max_rate: float | None
    missed_rate: float | None = None
    """The lowest measured rate above max_rate that missed the targets (None: none did)."""
    note: str


def search_max_rate(
    measure: Callable[[float], ScenarioPoint],
    single_stream_rate: float,
    offline_rate: float,
    steps: int,
    time_budget_s: float,
) -> SearchOutcome:
    """Search as the module docstring says; `measure(rate)` runs the server scenario at `rate`
    and returns its judged point (`meets_target` set)."""
    started = time.perf_counter()
    low, high = single_stream_rate, max(offline_rate, single_stream_rate)
    bracket = f"between {low:.4g} (single-stream) and {high:.4g} (offline) req/s"
    points: list[ScenarioPoint] = []

    def passes(rate: float) -> bool:
        result = measure(rate)
        points.append(result)
        return bool(result.meets_target)

    if not passes(low):
        high, low = low, low / LOW_FACTOR
        bracket = f"below the single-stream throughput {high:.4g} req/s (it misses the target)"
        if not passes(low):
            note = f"no rate met the targets; even {low:.4g} req/s (1/{LOW_FACTOR:g} of it) missed"
            return SearchOutcome(points=points, max_rate=None, missed_rate=low, note=note)
    elif passes(high):
        note = f"the offline throughput {high:.4g} req/s meets the targets: the upper bound"
        return SearchOutcome(points=points, max_rate=high, note=note)
    stop = f"{steps} bisection steps"
    for done in range(steps):
        if time.perf_counter() - started > time_budget_s:
            stop = f"the time budget of {time_budget_s:g} s after {done} of {steps} steps"
            break
        middle = math.sqrt(low * high)
        if passes(middle):
            low = middle
        else:
            high = middle
    note = (
        f"bisection {bracket}; stopped by {stop}; the max rate lies in "
        f"[{low:.4g}, {high:.4g}) req/s"
    )
    return SearchOutcome(points=points, max_rate=low, missed_rate=high, note=note)
