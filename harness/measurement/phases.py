"""Phase timing: where a step's time goes (forward, backward, optimizer, ...).

Library use, around your own training step (like TorchBench's staged train step):

    from harness.measurement import phases

    timer = phases.PhaseTimer(backend)          # None: the CPU and its host clock
    for batch in batches:
        with timer.step():
            with phases.phase("forward"):
                loss = model(batch).sum()
            with phases.phase("backward"):
                loss.backward()
            with phases.phase("optimizer"):
                optimizer.step()
                optimizer.zero_grad()
    print(timer.breakdown().phases_s)

`phases.phase(name)` does nothing outside a `timer.step()`, so it can stay in a training loop.
Each boundary takes a stamp from the backend's timer (a device event on accelerators, the host
clock on the CPU) without waiting; the one synchronize of an iteration happens when its
`step()` ends, after the step's work is queued.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from contextvars import ContextVar
from typing import Any

from backends.base import Backend
from harness.results.schema import PhaseBreakdown
from workloads.base import Instance

_ACTIVE: ContextVar[PhaseTimer | None] = ContextVar("accelbench_phase_timer", default=None)
_IDLE = nullcontext()


class PhaseTimer:
    """Collects phase times over iterations of a step, with `backend`'s timer."""

    def __init__(self, backend: Backend | None = None) -> None:
        if backend is None:
            from backends.cpu import CPUBackend

            backend = CPUBackend()
        self._timer = backend.timer()
        self._open: list[tuple[str, Any, Any]] = []
        self.iterations: list[dict[str, float]] = []
        """Seconds per phase, one dict per finished iteration (a phase entered twice in an
        iteration counts its total)."""
        self.step_times: list[float] = []
        """Seconds of each finished iteration, its first stamp to its last."""

    @property
    def clock(self) -> str:
        """What the timer's stamps read (a device's events, the host clock)."""
        return self._timer.clock

    @contextmanager
    def step(self) -> Iterator[PhaseTimer]:
        """One instrumented iteration: `phase(name)` inside it is timed by this timer; on
        exit the device is waited for once and the iteration's phase times are stored."""
        stamp = self._timer.stamp
        self._open = []
        token = _ACTIVE.set(self)
        start = stamp()
        try:
            yield self
        finally:
            end = stamp()
            _ACTIVE.reset(token)
        self._timer.settle()
        between = self._timer.seconds_between
        times: dict[str, float] = {}
        for name, begin, finish in self._open:
            times[name] = times.get(name, 0.0) + between(begin, finish)
        self._open = []
        self.iterations.append(times)
        self.step_times.append(between(start, end))

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Time the body as phase `name` of the current iteration (a stamp on entry and exit,
        no wait)."""
        stamp = self._timer.stamp
        begin = stamp()
        try:
            yield
        finally:
            self._open.append((name, begin, stamp()))

    def breakdown(self, attribution: str = "") -> PhaseBreakdown:
        """Median seconds per phase and per iteration over the finished iterations, and the
        coverage: the median over iterations of (sum of the iteration's phases) / (its step
        time), per iteration so that a preemption landing in one phase of one iteration does
        not skew it. Raises ValueError before any iteration."""
        return breakdown_of(self.iterations, self.step_times, self.clock, attribution)


def breakdown_of(
    iterations: list[dict[str, float]],
    step_times: list[float],
    clock: str = "",
    attribution: str = "",
) -> PhaseBreakdown:
    """The breakdown of instrumented iterations (seconds per phase, and each iteration's
    step time): median seconds per phase and per iteration, and the coverage, the median over
    iterations of (sum of the iteration's phases) / (its step time), per iteration so that a
    preemption landing in one phase of one iteration does not skew it. Raises ValueError
    without iterations."""
    if not iterations:
        raise ValueError("no iteration was timed: run the step inside `with timer.step():`")
    names: list[str] = []
    for times in iterations:
        names += [n for n in times if n not in names]
    phases_s = {n: statistics.median(t.get(n, 0.0) for t in iterations) for n in names}
    pairs = list(zip(iterations, step_times, strict=True))
    return PhaseBreakdown(
        phases_s=phases_s,
        step_s=statistics.median(step_times),
        coverage=statistics.median(
            sum(times.values()) / step if step > 0 else 0.0 for times, step in pairs
        ),
        unattributed_s=statistics.median(step - sum(times.values()) for times, step in pairs),
        iterations=len(iterations),
        clock=clock,
        attribution=attribution,
    )


def phase(name: str) -> AbstractContextManager[object]:
    """Time the body as phase `name` of the active `PhaseTimer.step()`; outside one it does
    nothing (and costs one context-variable read)."""
    timer = _ACTIVE.get()
    if timer is None:
        return _IDLE
    return timer.phase(name)


def add_phase_iterations(
    timer: PhaseTimer,
    step: Callable[[], object],
    *,
    warmup_iterations: int = 1,
    min_iterations: int = 10,
    max_iterations: int = 100,
    max_time_s: float = 0.5,
) -> None:
    """Run `step` (which enters `phase(name)` for its phases) in instrumented iterations
    added to `timer`: `warmup_iterations` untimed calls, then at least `min_iterations` timed
    ones, more until `max_time_s` of timing or `max_iterations`."""
    for _ in range(warmup_iterations):
        step()
    started = time.perf_counter()
    done = len(timer.iterations)
    while len(timer.iterations) - done < max_iterations:
        with timer.step():
            step()
        enough = len(timer.iterations) - done >= min_iterations
        if enough and time.perf_counter() - started >= max_time_s:
            break


def time_phases(
    step: Callable[[], object],
    backend: Backend | None = None,
    *,
    warmup_iterations: int = 1,
    min_iterations: int = 10,
    max_iterations: int = 100,
    max_time_s: float = 0.5,
    attribution: str = "",
) -> PhaseBreakdown:
    """The breakdown of `step` from instrumented iterations of its own
    (`add_phase_iterations` on a fresh timer)."""
    timer = PhaseTimer(backend)
    add_phase_iterations(
        timer,
        step,
        warmup_iterations=warmup_iterations,
        min_iterations=min_iterations,
        max_iterations=max_iterations,
        max_time_s=max_time_s,
    )
    return timer.breakdown(attribution)


PHASE_ITERATIONS = 10
"""The fewest instrumented iterations behind a case's breakdown."""


def instance_phase_timer(
    instance: Instance, mode: str, backend: Backend, share: float = 1.0, warm_up: bool = True
) -> PhaseTimer | None:
    """Instrumented iterations of `instance`'s staged `mode` step (call it after a headline
    measurement, which it does not touch); None when the mode has no staged step (everything
    but training). Measured in R rounds, each round times `share` (1/R) of the iterations
    (PHASE_ITERATIONS in all at least), right after its own headline round, so the phases
    see the machine the headline saw; `warm_up`: one untimed call first."""
    staged = instance.staged_step(mode, phase)
    if staged is None:
        return None
    timer = PhaseTimer(backend)
    add_phase_iterations(
        timer,
        staged,
        warmup_iterations=1 if warm_up else 0,
        min_iterations=max(1, math.ceil(PHASE_ITERATIONS * share)),
        max_iterations=max(1, math.ceil(100 * share)),
        max_time_s=0.5 * share,
    )
    return timer


def instance_phases(instance: Instance, mode: str, backend: Backend) -> PhaseBreakdown | None:
    """The phase breakdown of `instance`'s `mode` step in one go (`instance_phase_timer`),
    with the optimizer's traffic; None when the mode has no staged step."""
    timer = instance_phase_timer(instance, mode, backend)
    if timer is None:
        return None
    breakdown = timer.breakdown()
    traffic = instance.optimizer_traffic()
    if traffic is not None:
        breakdown.optimizer_bytes, breakdown.optimizer_bytes_note = traffic
    return breakdown
