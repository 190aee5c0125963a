"""Timing a step on every rank with one schedule all ranks agree on.

Every rank runs the same number of calls in the same blocks (a DDP step is a collective: a
rank that ran one call more would wait forever), so every decision (warm-up length, block
size, when to stop) is taken from values all-reduced with MAX over a CPU (gloo) control
group: identical inputs on every rank, identical decisions, no broadcast needed.

Each sample: barrier, then every rank times one block; the sample's step time is the
maximum over ranks (a data-parallel step is done when its slowest rank is done). Each rank's
own samples are kept too. The rules otherwise follow `harness.measure`: first call
timed apart (cold start), warm-up by time and iterations, block size with timer overhead
<= 1e-4 of a sample, at least `min_samples`, stop on the CI precision or the time budget.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
import torch.distributed as dist
from pydantic import BaseModel

from backends.base import Backend
from harness.measurement.timing import block_size, precise_enough, timer_overhead_s, warm_up
from harness.results.config import MeasureSettings


class SyncedSamples(BaseModel):
    """What one rank knows after a synchronized measurement."""

    step_samples_s: list[float]
    """Max over ranks of each sample, seconds per iteration (identical on every rank)."""
    local_samples_s: list[float]
    """This rank's own seconds per iteration, sample by sample."""
    iterations_per_sample: int
    warmup_iterations: int
    cold_start_s: float
    total_time_s: float
    stable: bool


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
) -> SyncedSamples:
    """Time `fn` on every rank of `group` with an agreed schedule; see module docstring.

    Must be called by every rank of the group with equivalent `fn` and equal `settings`."""
    timer = backend.timer()
    start = time.perf_counter()
    dist.barrier(group=group)
    (cold_start,) = all_max([timer.time_block(fn, 1)], group)

    def synced_block(calls: int) -> float:
        dist.barrier(group=group)
        (elapsed,) = all_max([timer.time_block(fn, calls)], group)
        return elapsed

    per_call, done = warm_up(synced_block, settings.warmup_s, settings.warmup_iterations)
    (overhead,) = all_max([timer_overhead_s(timer)], group)
    iterations = block_size(per_call, overhead, settings.min_sample_s)

    local: list[float] = []
    steps: list[float] = []
    stable = False
    sampling_start = time.perf_counter()
    while len(steps) < settings.max_samples:
        dist.barrier(group=group)
        mine = timer.time_block(fn, iterations) / iterations
        local.append(mine)
        step, elapsed = all_max([mine, time.perf_counter() - sampling_start], group)
        steps.append(step)
        if len(steps) < settings.min_samples:
            continue
        if precise_enough(steps, settings.precision):
            stable = True
            break
        if elapsed >= settings.max_time_s:
            break
    return SyncedSamples(
        step_samples_s=steps,
        local_samples_s=local,
        iterations_per_sample=iterations,
        warmup_iterations=done,
        cold_start_s=cold_start,
        total_time_s=time.perf_counter() - start,
        stable=stable,
    )
