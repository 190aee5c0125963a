"""Operator profiles on Ascend NPUs through torch_npu's own profiler.

torch.profiler's PrivateUse1 activity does not see NPU kernels, so a torch.profiler profile of
an npu step ranks host dispatch time. torch_npu ships its own profiler
(`torch_npu.profiler.profile`, activities `ProfilerActivity.CPU` / `ProfilerActivity.NPU`). It
has no in-process event list (no `events()` / `key_averages()`): it writes raw data to a
directory and parses it there, on `on_trace_ready=tensorboard_trace_handler(dir)`, into
`DIR/<worker>_<pid>_<time>_ascend_pt/ASCEND_PROFILER_OUTPUT/`. Its `operator_details.csv` has a
row per operator call, in pre-order of the host call tree (each call before the calls inside
it, by start time; `ProfilerStep#N` rows left out), with the columns `Name`, `Input Shapes`,
`Call Stack`, `Host Self Duration(us)`, `Host Total Duration(us)`, `Device Self Duration(us)`,
`Device Total Duration(us)`, and the AI Core variants of the last two. Host self is host total
less the children's host totals, in integral ns written as us; device self sums the kernels
the call launched itself.

Read from torch_npu's sources (github.com/Ascend/pytorch): `torch_npu/profiler/profiler.py`
(profile, tensorboard_trace_handler, no event API), `scheduler.py` (Schedule),
`experimental_config.py` (`_ExperimentalConfig`, Level0 and text export by default),
`_profiler_path_creator.py` (the `_ascend_pt` folder), `analysis/prof_config/_parser_config.py`
(text export at Level0-2 writes operator_details.csv and kernel_details.csv),
`analysis/prof_view/_operator_view_parser.py` (the columns),
`analysis/prof_common_func/_tree_builder.py` and `prof_bean/_torch_op_node.py` (row order and
host self time).
"""

from __future__ import annotations

import csv
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from backends.profiling import OpRow, ProfileWindow, run_profiled

OUTPUT_DIR = "ASCEND_PROFILER_OUTPUT"
OPERATOR_DETAILS = "operator_details.csv"
TRACE_VIEW = "trace_view.json"
NAME = "Name"
HOST_SELF = "Host Self Duration(us)"
HOST_TOTAL = "Host Total Duration(us)"
DEVICE_SELF = "Device Self Duration(us)"
ACTIVITIES = ["CPU", "NPU"]

NO_NPU_ROWS = (
    "torch_npu's profiler saw no NPU kernels (every Device Self Duration is 0): operators are "
    "ranked by host self time"
)


def _ns(text: str | None) -> int:
    """A duration column (us, with ns digits) as integral ns; empty or malformed reads 0."""
    try:
        return round(float(text or 0) * 1000)
    except ValueError:
        return 0


def operator_rows(path: Path) -> list[OpRow]:
    """The rows of torch_npu's `operator_details.csv` with their enclosing operators.

    The file lists calls in pre-order and each call's host total is its host self plus its
    children's host totals, so the tree is rebuilt exactly: a call's children follow it until
    their host totals add up to its total less its self time. (Children of zero host time
    after that point read as its siblings.)"""
    rows: list[OpRow] = []
    open_calls: list[tuple[str, list[int]]] = []  # (name, [children's host ns still to come])
    with path.open(newline="", encoding="utf-8") as handle:
        for record in csv.DictReader(handle):
            name = record.get(NAME) or ""
            total, own = _ns(record.get(HOST_TOTAL)), _ns(record.get(HOST_SELF))
            while open_calls and open_calls[-1][1][0] <= 0:
                open_calls.pop()
            if open_calls:
                open_calls[-1][1][0] -= total
            rows.append(
                OpRow(
                    name=name,
                    ancestors=tuple(call for call, _ in reversed(open_calls)),
                    device_us=_ns(record.get(DEVICE_SELF)) / 1000,
                    host_us=own / 1000,
                )
            )
            open_calls.append((name, [total - own]))
    return rows


def experimental_config(profiler: ModuleType) -> Any:
    """Level0 (framework and device task times, no AI Core metrics) exported as text, the
    layout operator_rows reads; releases without `export_type` export text only."""
    level = profiler.ProfilerLevel.Level0
    export = getattr(profiler, "ExportType", None)
    if export is None:
        return profiler._ExperimentalConfig(profiler_level=level)
    return profiler._ExperimentalConfig(profiler_level=level, export_type=export.Text)


def torch_npu_window(
    profiler: ModuleType,
    step: Callable[[], object],
    iterations: int,
    synchronize: Callable[[], None],
    trace_path: Path | None = None,
) -> ProfileWindow:
    """`iterations` calls of `step` recorded by torch_npu's profiler (after one profiler
    warm-up call), parsed by torch_npu into a temporary folder and read back as rows; its
    `trace_view.json` is copied to `trace_path` when given. The note says why when no NPU
    time came back."""
    with tempfile.TemporaryDirectory(prefix="accelbench-npu-profile-") as work:
        synchronize()
        with profiler.profile(
            activities=[profiler.ProfilerActivity.CPU, profiler.ProfilerActivity.NPU],
            schedule=profiler.schedule(wait=0, warmup=1, active=iterations, repeat=1),
            on_trace_ready=profiler.tensorboard_trace_handler(work),
            experimental_config=experimental_config(profiler),
        ) as prof:
            run_profiled(step, iterations + 1, synchronize, prof.step)
        found = sorted(Path(work).glob(f"*_ascend_pt/{OUTPUT_DIR}/{OPERATOR_DETAILS}"))
        if not found:
            return ProfileWindow(
                activities=ACTIVITIES,
                device_profiled=True,
                rows=[],
                note=(
                    f"torch_npu's profiler wrote no {OUTPUT_DIR}/{OPERATOR_DETAILS} (its own "
                    "messages above say why): no operator profile"
                ),
            )
        rows = operator_rows(found[-1])
        trace = found[-1].with_name(TRACE_VIEW)
        if trace_path is not None and trace.is_file():
            trace_path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(trace, trace_path)
    window = ProfileWindow(activities=ACTIVITIES, device_profiled=True, rows=rows)
    return window if window.device_rows_seen() else window.model_copy(update={"note": NO_NPU_ROWS})
