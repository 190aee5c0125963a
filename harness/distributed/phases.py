"""The phase breakdown of a data-parallel training step, with its gradient all-reduce.

DDP overlaps the all-reduce with backward: buckets are reduced while later layers still
compute gradients, and backward returns only once every bucket is reduced. The backward
phase of a normal step therefore holds backward compute plus whatever communication did
not hide behind it. Attribution: the same staged step is timed again inside every DDP
wrapper's `no_sync()` (no all-reduce at all); backward = that backward, communication = the
normal backward minus it (never negative), i.e. the communication that backward waited for.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from backends.base import Backend
from harness.measurement.phases import PhaseTimer, add_phase_iterations, phase
from harness.results.schema import PhaseBreakdown
from workloads.base import Instance

ITERATIONS = 10
"""Instrumented iterations per variant; fixed, because every rank must run the same number
of DDP steps (a step is a collective)."""

ATTRIBUTION = (
    "DDP all-reduce overlaps backward: backward is timed inside no_sync() (no all-reduce); "
    "communication = backward with the all-reduce minus backward without it (rank 0's clock)"
)


def ddp_phase_timer(
    instance: Instance,
    mode: str,
    backend: Backend,
    wrapped: list[torch.nn.Module],
    group: dist.ProcessGroup | None,
    iterations: int = ITERATIONS,
) -> PhaseTimer | None:
    """`iterations` instrumented iterations of `instance`'s staged `mode` step on this rank,
    communication attributed as the module docstring says, iteration by iteration: each
    iteration of the normal step is paired with one inside no_sync(). None when the mode has
    no staged step. Every rank of `group` must call it alike."""
    staged = instance.staged_step(mode, phase)
    if staged is None:
        return None

    def timed(step: Callable[[], object]) -> PhaseTimer:
        dist.barrier(group=group)
        timer = PhaseTimer(backend)
        add_phase_iterations(
            timer, step, min_iterations=iterations, max_iterations=iterations, max_time_s=0.0
        )
        return timer

    synced = timed(staged)

    def without_comm() -> None:
        with contextlib.ExitStack() as stack:
            for module in wrapped:
                if isinstance(module, DistributedDataParallel):
                    stack.enter_context(module.no_sync())
            staged()

    local = timed(without_comm)
    for times, alone in zip(synced.iterations, local.iterations, strict=True):
        backward = alone.get("backward", 0.0)
        times["communication"] = max(times.get("backward", 0.0) - backward, 0.0)
        times["backward"] = backward
    return synced


def ddp_phases(
    instance: Instance,
    mode: str,
    backend: Backend,
    wrapped: list[torch.nn.Module],
    group: dist.ProcessGroup | None,
) -> PhaseBreakdown | None:
    """The breakdown of `ddp_phase_timer`'s iterations, with the optimizer's traffic."""
    timer = ddp_phase_timer(instance, mode, backend, wrapped, group)
    if timer is None:
        return None
    breakdown = timer.breakdown(ATTRIBUTION)
    traffic = instance.optimizer_traffic()
    if traffic is not None:
        breakdown.optimizer_bytes, breakdown.optimizer_bytes_note = traffic
    return breakdown
