"""What a backend's profiler hands back for `bench run --profile`: one row per operator call.

`Backend.profile_window` runs a step under the backend's profiler and returns a ProfileWindow;
harness.measurement.profile places the rows in the step and ranks them. The generic path here
is torch.profiler (`torch_profiler_window`); a backend whose device torch.profiler cannot see
(Ascend: torch_npu has its own profiler) builds the same rows from its own profiler's output.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict

NO_DEVICE_ROWS = "the profiler saw no device kernels: operators are ranked by host self time"


class OpRow(BaseModel):
    """One call of one operator in a profiled window."""

    model_config = ConfigDict(frozen=True)

    name: str
    """The profiler's name of the operator (e.g. `aten::mm`, `Optimizer.step#AdamW.step`)."""
    ancestors: tuple[str, ...] = ()
    """Names of the operators enclosing this call on the host, nearest first."""
    device_us: float = 0.0
    """Device time of the kernels this call launched itself (not its children's), in us."""
    host_us: float = 0.0
    """Host time of this call less its children's, in us."""


class ProfileWindow(BaseModel):
    """The rows of a profiled window and how they were obtained."""

    activities: list[str]
    """What the profiler recorded (e.g. ["CPU", "CUDA"], ["CPU", "NPU"])."""
    device_profiled: bool
    """Whether the profiler was asked for device time (an accelerator's activity)."""
    rows: list[OpRow]
    note: str = ""
    """Why device time is missing where it was expected (profiler absent, no device rows)."""

    def device_rows_seen(self) -> bool:
        """Device time was asked for and some row has it."""
        return self.device_profiled and any(row.device_us > 0 for row in self.rows)


def run_profiled(
    step: Callable[[], object],
    iterations: int,
    synchronize: Callable[[], None],
    after_each: Callable[[], object] | None = None,
) -> None:
    """`iterations` calls of `step` (each followed by `after_each`, e.g. a profiler's step()),
    with the device synchronized before the last `after_each`, so the last call's kernels are
    finished while the profiler still records."""
    for index in range(iterations):
        step()
        if index == iterations - 1:
            synchronize()
        if after_each is not None:
            after_each()


def _ancestors(event: Any) -> tuple[str, ...]:
    names = []
    node = event.cpu_parent
    while node is not None:
        names.append(node.name)
        node = node.cpu_parent
    return tuple(names)


def torch_profiler_window(
    step: Callable[[], object],
    iterations: int,
    activities: Sequence[torch.profiler.ProfilerActivity],
    synchronize: Callable[[], None],
    trace_path: Path | None = None,
) -> ProfileWindow:
    """`iterations` calls of `step` under torch.profiler with `activities`: a row per event,
    its self device time (kernels it launched) and self CPU time; the Chrome trace written to
    `trace_path` when given. Where a device activity was asked for and no event has device
    time, the note says that host time is ranked."""
    from torch.profiler import ProfilerActivity, profile

    synchronize()
    with profile(activities=list(activities)) as prof:
        run_profiled(step, iterations, synchronize)
    if trace_path is not None:
        trace_path.parent.mkdir(parents=True, exist_ok=True)
        prof.export_chrome_trace(str(trace_path))
    rows = [
        OpRow(
            name=event.name,
            ancestors=_ancestors(event),
            device_us=float(event.self_device_time_total),
            host_us=float(event.self_cpu_time_total),
        )
        for event in prof.events()
        if not event.is_async
    ]
    window = ProfileWindow(
        activities=[a.name for a in activities],
        device_profiled=any(a != ProfilerActivity.CPU for a in activities),
        rows=rows,
    )
    if window.device_profiled and not window.device_rows_seen():
        window.note = NO_DEVICE_ROWS
    return window
