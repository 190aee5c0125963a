"""A stand-in `torch_npu.profiler` for tests/unit/test_ascend.py (test-only, never installed).

It mirrors the real module's API as torch_npu's sources define it (github.com/Ascend/pytorch:
`torch_npu/profiler/profiler.py`, `scheduler.py`, `experimental_config.py`) and writes what the
real one's text export writes, where the real one writes it: on trace-ready,
`DIR/<host>_<pid>_<utc time>_ascend_pt/ASCEND_PROFILER_OUTPUT/` with `operator_details.csv`
(a row per operator call in pre-order of the host call tree, `ProfilerStep#N` rows left out,
the columns of `analysis/prof_view/_operator_view_parser.py`, host self time = host total less
the children's host totals in integral ns, written as us), `kernel_details.csv` and
`trace_view.json`.

The operator calls are real: the recorded steps run under torch.profiler (host only) and its
call tree is written out. The NPU is not: a call named in KERNEL_US gets a kernel of that
many us, any other leaf `aten::` call one of DEFAULT_KERNEL_US, so device time ranks
differently from host time. `STATE.device_kernels = False` writes zero device time, as a
profile whose NPU activity saw nothing.
"""

from __future__ import annotations

import csv
import enum
import json
import os
import socket
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

OPERATOR_HEADERS = [
    "Name",
    "Input Shapes",
    "Call Stack",
    "Host Self Duration(us)",
    "Host Total Duration(us)",
    "Device Self Duration(us)",
    "Device Total Duration(us)",
    "Device Self Duration With AICore(us)",
    "Device Total Duration With AICore(us)",
]
KERNEL_HEADERS = [
    "Step Id",
    "Device_id",
    "Name",
    "Type",
    "Accelerator Core",
    "Start Time(us)",
    "Duration(us)",
    "Wait Time(us)",
    "Block Num",
]
KERNEL_US = {"aten::addmm": 400.0, "aten::mm": 300.0}
DEFAULT_KERNEL_US = 2.0


class _State:
    device_kernels = True
    analysed: list[Path] = []


STATE = _State()


class ProfilerActivity(enum.Enum):
    CPU = 0
    NPU = 1


class ProfilerAction(enum.Enum):
    NONE = 0
    WARMUP = 1
    RECORD = 2
    RECORD_AND_SAVE = 3


class ProfilerLevel:
    Level0 = "Level0"
    Level1 = "Level1"
    Level2 = "Level2"
    Level_none = "Level_none"


class ExportType:
    Db = "db"
    Text = "text"


class _ExperimentalConfig:
    def __init__(self, profiler_level: str = "Level0", export_type: str = "text") -> None:
        self.profiler_level, self.export_type = profiler_level, export_type


class schedule:
    """torch_npu.profiler.schedule (scheduler.Schedule): skip, wait, warmup, active, repeat."""

    def __init__(
        self, wait: int, active: int, warmup: int = 0, repeat: int = 0, skip_first: int = 0
    ) -> None:
        self.wait, self.active, self.warmup = wait, active, warmup
        self.repeat, self.skip_first = repeat, skip_first

    def __call__(self, step: int) -> ProfilerAction:
        if step < self.skip_first:
            return ProfilerAction.NONE
        step -= self.skip_first
        cycle = self.wait + self.warmup + self.active
        if self.repeat > 0 and step / cycle >= self.repeat:
            return ProfilerAction.NONE
        mod = step % cycle
        if mod < self.wait:
            return ProfilerAction.NONE
        if mod < self.wait + self.warmup:
            return ProfilerAction.WARMUP
        return ProfilerAction.RECORD if mod < cycle - 1 else ProfilerAction.RECORD_AND_SAVE


def tensorboard_trace_handler(
    dir_name: str | None = None,
    worker_name: str | None = None,
    analyse_flag: bool = True,
    async_mode: bool = False,
) -> Callable[[profile], None]:
    def handler_fn(prof: profile) -> None:
        if analyse_flag:
            prof._analyse(Path(dir_name or os.getcwd()), worker_name)

    return handler_fn


_RECORDING = (ProfilerAction.RECORD, ProfilerAction.RECORD_AND_SAVE)


class profile:
    """Records between the schedule's RECORD steps; calls on_trace_ready after
    RECORD_AND_SAVE (or at stop while recording), as the real ProfActionController does."""

    def __init__(
        self,
        *,
        activities: Iterable[ProfilerActivity] | None = None,
        schedule: Callable[[int], ProfilerAction] | None = None,
        on_trace_ready: Callable[[profile], None] | None = None,
        experimental_config: _ExperimentalConfig | None = None,
        **_: Any,
    ) -> None:
        self.activities = set(activities or ProfilerActivity)
        self.schedule = schedule or (lambda _step: ProfilerAction.RECORD)
        self.on_trace_ready = on_trace_ready
        self.step_num = 0
        self.current = self.schedule(0)
        self._torch: Any = None
        self._events: list[Any] = []
        self._step_mark: Any = None

    def __enter__(self) -> profile:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self._transit(ProfilerAction.NONE, self.current)
        self._mark_step()

    def stop(self) -> None:
        self._step_mark.__exit__(None, None, None)
        self._transit(self.current, None)

    def step(self) -> None:
        self._step_mark.__exit__(None, None, None)
        previous = self.current
        self.step_num += 1
        self.current = self.schedule(self.step_num)
        self._transit(previous, self.current)
        self._mark_step()

    def _mark_step(self) -> None:
        """Each step inside `ProfilerStep#N`, as the real profile does with a schedule."""
        self._step_mark = torch.autograd.profiler.record_function(f"ProfilerStep#{self.step_num}")
        self._step_mark.__enter__()

    def _transit(self, before: ProfilerAction, after: ProfilerAction | None) -> None:
        if before == ProfilerAction.RECORD and after in _RECORDING:
            return
        if before in _RECORDING:
            self._torch.__exit__(None, None, None)
            self._events = [e for e in self._torch.events() if not e.is_async]
            self._torch = None
            if (before == ProfilerAction.RECORD_AND_SAVE or after is None) and self.on_trace_ready:
                self.on_trace_ready(self)
        if after in _RECORDING:
            self._torch = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU])
            self._torch.__enter__()

    def _analyse(self, dir_name: Path, worker_name: str | None) -> None:
        worker = worker_name or f"{socket.gethostname()}_{os.getpid()}"
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d%H%M%S%f")[:-3]
        output = dir_name / f"{worker}_{stamp}_ascend_pt" / "ASCEND_PROFILER_OUTPUT"
        output.mkdir(parents=True)
        device = STATE.device_kernels and ProfilerActivity.NPU in self.activities
        operators, kernels, trace = [], [], []
        for event in _preorder(self._events):
            if "ProfilerStep#" in event.name:
                continue
            total = _dur_ns(event)
            own = total - sum(_dur_ns(child) for child in event.cpu_children)
            kernel = 0.0
            if device and event.name in KERNEL_US:
                kernel = KERNEL_US[event.name]
            elif device and not event.cpu_children and event.name.startswith("aten::"):
                kernel = DEFAULT_KERNEL_US
            if kernel:
                kernels.append([0, 0, event.name, "Kernel", "AI_CORE", 0, kernel, 0, 1])
            operators.append([event.name, "", "", own / 1000, total / 1000, kernel, kernel, 0, 0])
            trace.append({"ph": "X", "name": event.name, "dur": total / 1000, "cat": "cpu_op"})
        _write_csv(output / "operator_details.csv", OPERATOR_HEADERS, operators)
        _write_csv(output / "kernel_details.csv", KERNEL_HEADERS, kernels)
        (output / "trace_view.json").write_text(json.dumps(trace))
        STATE.analysed.append(output)


def _dur_ns(event: Any) -> int:
    return round(event.time_range.end * 1000) - round(event.time_range.start * 1000)


def _preorder(events: list[Any]) -> list[Any]:
    """Each call before the calls inside it, siblings by start time (torch_npu's TreeBuilder)."""
    order: list[Any] = []

    def visit(event: Any) -> None:
        order.append(event)
        for child in sorted(event.cpu_children, key=lambda e: e.time_range.start):
            visit(child)

    for root in sorted(
        (e for e in events if e.cpu_parent is None), key=lambda e: e.time_range.start
    ):
        visit(root)
    return order


def _write_csv(path: Path, headers: list[str], rows: list[list[Any]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(headers)
        writer.writerows(rows)
