"""Timing a step on every rank with one schedule all ranks agree on.

Every rank runs the same number of calls in the same blocks (a DDP step is a collective: a
rank that ran one call more would wait forever), so every decision (warm-up length, block
size, when to stop) is taken from values all-reduced with MAX over a CPU (gloo) control
group: identical inputs on every rank, identical decisions, no broadcast needed.

Each sample: barrier, then every rank times one block; the sample's step time is the
maximum over ranks (a data-parallel step is done when its slowest rank is done). Each rank's
own samples are kept too. The schedule itself (cold start timed apart, warm-up by time and
iterations, block size with timer overhead <= 1e-4 of a sample, at least `min_samples`, stop
on the CI precision or the time budget) is `harness.measurement.timing.run_schedule`, the
same loop `harness.measure` runs; this module only supplies the synchronized block, overhead
and sample functions.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
import torch.distributed as dist
from pydantic import BaseModel

from backends.base import Backend
from harness.measurement.timing import run_schedule, summarize, timer_overhead_s
from harness.results.config import MeasureSettings
from harness.results.schema import Measurement


class SyncedSamples(BaseModel):
    """What one rank knows after a synchronized measurement."""

    step_samples_s: list[float]
    """Max over ranks of each sample, seconds per iteration (identical on every rank)."""
    local_samples_s: list[float]
    """This rank's own seconds per iteration, sample by sample."""
    iterations_per_sample: int
    warmup_iterations: int
    cold_start_s: float | None
    total_time_s: float
    stable: bool

    def measurement(self) -> Measurement:
        """The stored Measurement of the step times (per-sample max over ranks)."""
        return summarize(
            self.step_samples_s,
            iterations_per_sample=self.iterations_per_sample,
            warmup_iterations=self.warmup_iterations,
            cold_start_s=self.cold_start_s,
            total_time_s=self.total_time_s,
            stable=self.stable,
        )


def all_max(values: list[float], group: dist.ProcessGroup | None) -> list[float]:
    """Element-wise max of `values` over the ranks of `group` (a CPU/gloo group)."""
    tensor = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX, group=group)
    return [float(v) for v in tensor.tolist()]


def measure_synchronized(
    fn: Callable[[], object],
    backend: Backend,
    group: dist.ProcessGroup | None,
    settings: MeasureSettings,
    *,
    time_cold_start: bool = True,
    iterations: int | None = None,
) -> SyncedSamples:
    """Time `fn` on every rank of `group` with an agreed schedule; see module docstring.
    `time_cold_start` and `iterations` are `run_schedule`'s (later rounds of a case time no
    cold start and keep the first round's block size).

    Must be called by every rank of the group with equivalent `fn` and equal arguments."""
    timer = backend.timer()
    start = time.perf_counter()
    local: list[float] = []

    def synced_block(calls: int) -> float:
        dist.barrier(group=group)
        (elapsed,) = all_max([timer.time_block(fn, calls)], group)
        return elapsed

    def synced_overhead() -> float:
        (overhead,) = all_max([timer_overhead_s(timer)], group)
        return overhead

    def synced_sample(calls: int, sampling_start: float) -> tuple[float, float]:
        dist.barrier(group=group)
        mine = timer.time_block(fn, calls) / calls
        local.append(mine)
        step, spent = all_max([mine, time.perf_counter() - sampling_start], group)
        return step, spent

    dist.barrier(group=group)
    schedule = run_schedule(
        synced_block,
        synced_overhead,
        take_sample=synced_sample,
        time_cold_start=time_cold_start,
        iterations=iterations,
        **settings.model_dump(),
    )
    return SyncedSamples(
        step_samples_s=schedule.samples_s,
        local_samples_s=local,
        iterations_per_sample=schedule.iterations_per_sample,
        warmup_iterations=schedule.warmup_iterations,
        cold_start_s=schedule.cold_start_s,
        total_time_s=time.perf_counter() - start,
        stable=schedule.stable,
    )
