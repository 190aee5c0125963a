"""Figures from results: history of each case's median with change points, and train vs
infer throughput bars. Figures from `harness.report.mpl.literal_figure` (text drawn literally);
every figure saved as PNG and SVG."""

from __future__ import annotations

import math
import textwrap
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from harness.analysis.changepoints import ChangePoint, detect_change_points
from harness.errors import BenchError
from harness.report.mpl import literal_figure
from harness.results.schema import CaseKey, RunRecord
from harness.results.store import prepare_out_dir
from harness.units import time_unit

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

HistoryAxis = Literal["time", "commit"]


@dataclass
class HistoryPoint:
    """One run's result for one case."""

    started_at: datetime
    commit: str | None
    label: str
    median_s: float
    ci95_s: tuple[float, float]


@dataclass
class CaseHistory:
    """A case's medians over runs (oldest first) on one backend and device."""

    title: str
    points: list[HistoryPoint] = field(default_factory=list)
    change_points: list[ChangePoint] = field(default_factory=list)


def _params_label(key: CaseKey) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(key.params.items()))


def case_histories(records: Sequence[RunRecord]) -> list[CaseHistory]:
    """Group successful cases by backend, device and `CaseKey.history_key` over runs (a new
    workload version continues the same history) and detect steps."""
    grouped: dict[tuple[str, str, str], CaseHistory] = {}
    for record in sorted(records, key=lambda r: r.started_at):
        for case in record.cases:
            m = case.measurement
            if case.status != "ok" or m is None:
                continue
            params = f" [{_params_label(case.key)}]" if case.key.params else ""
            title = f"{case.key.id}{params} on {record.backend} ({record.device.name})"
            group = (record.backend, record.device.name, case.key.history_key())
            history = grouped.setdefault(group, CaseHistory(title))
            history.points.append(
                HistoryPoint(
                    record.started_at,
                    record.environment.git_commit,
                    record.label,
                    m.median,
                    m.ci95,
                )
            )
    for history in grouped.values():
        history.change_points = detect_change_points([p.median_s for p in history.points])
    return sorted(grouped.values(), key=lambda h: h.title)


def _figsize(rows: int, width: float = 10.0, row_height: float = 3.2) -> tuple[float, float]:
    return width, max(row_height * rows, 3.0)


def _save(figure: Figure, out_dir: Path, stem: str) -> list[Path]:
    prepare_out_dir(out_dir)
    paths = [out_dir / f"{stem}.png", out_dir / f"{stem}.svg"]
    for path in paths:
        figure.savefig(path, dpi=120 if path.suffix == ".png" else None)
    return paths


def _plot_history(axes: Axes, history: CaseHistory, by: HistoryAxis) -> None:
    unit, scale = time_unit(max((p.ci95_s[1] for p in history.points), default=1.0), micro="µs")
    medians = [p.median_s / scale for p in history.points]
    lows = [p.ci95_s[0] / scale for p in history.points]
    highs = [p.ci95_s[1] / scale for p in history.points]
    if by == "commit":
        xs: list[object] = list(range(len(history.points)))
        axes.set_xticks(
            range(len(history.points)),
            [(p.commit or "?")[:8] for p in history.points],
            rotation=45,
            ha="right",
            fontsize=7,
        )
        axes.set_xlabel("accelbench commit (run order)")
    else:
        xs = [p.started_at for p in history.points]
        axes.set_xlabel("run start (UTC)")
        for tick in axes.get_xticklabels():
            tick.set_rotation(30)
    axes.fill_between(xs, lows, highs, alpha=0.25, color="tab:blue", label="95% CI of median")
    axes.plot(xs, medians, marker="o", color="tab:blue", label="median")
    for number, point in enumerate(history.change_points):
        x = xs[point.index]
        axes.axvline(
            x,  # type: ignore[arg-type]
            color="tab:red",
            linestyle="--",
            label="change point" if number == 0 else None,
        )
        axes.annotate(
            f"{point.relative_change:+.0%}",
            (x, medians[point.index]),  # type: ignore[arg-type]
            textcoords="offset points",
            xytext=(4, 6),
            color="tab:red",
        )
    if by == "time" and len(xs) == 1:  # one run: a day around it, not matplotlib's 4 years
        at = history.points[0].started_at
        axes.set_xlim(at - timedelta(hours=12), at + timedelta(hours=12))  # type: ignore[arg-type]
    axes.set_title("\n".join(textwrap.wrap(history.title, 90)), fontsize=9)
    axes.set_ylabel(f"time per iteration ({unit})")
    axes.grid(alpha=0.3)
    axes.legend(loc="best", fontsize=8)


def plot_history(
    records: Sequence[RunRecord], out_dir: Path, by: HistoryAxis = "time"
) -> tuple[list[Path], list[CaseHistory]]:
    """One panel per case (in up to three columns): median over runs, its CI band, change
    points marked.
    Writes history.png and history.svg; returns the paths and the histories drawn.
    Raises BenchError when no run has a successful case."""
    histories = case_histories(records)
    if not histories:
        raise BenchError("no successful case in the runs given: no history to plot.")
    columns = 1 if len(histories) <= 4 else 2 if len(histories) <= 12 else 3
    rows = math.ceil(len(histories) / columns)
    width = 10.0 * columns if columns < 3 else 24.0
    with literal_figure(figsize=_figsize(rows, width)) as figure:
        figure.suptitle(f"accelbench history: {len(records)} runs", fontsize=12)
        grid = figure.subplots(rows, columns, squeeze=False)
        for index, axes in enumerate(grid.flat):
            if index < len(histories):
                _plot_history(axes, histories[index], by)
            else:
                axes.set_visible(False)
        return _save(figure, out_dir, "history"), histories


def _group_label(key: CaseKey) -> str:
    """A bar group's label: every field of the pair key that can differ within a workload."""
    label = f"{key.dtype} b{key.batch} {key.preset}"
    if key.params:
        label += f"\n{_params_label(key)}"
    if key.compile:
        label += "\ncompiled"
    if key.nproc > 1:
        label += f"\nnp{key.nproc}"
    return label


def plot_throughput(records: Sequence[RunRecord], out_dir: Path) -> list[Path]:
    """Per workload, grouped bars of throughput by mode (train vs infer, and any other mode):
    one group per `CaseKey.pair_key` of each run. Writes throughput.png and throughput.svg."""
    # workload -> (run, pair key) -> mode -> (value, unit); labels: the same key -> x label
    data: dict[str, dict[tuple[str, str], dict[str, tuple[float, str]]]] = defaultdict(dict)
    labels: dict[tuple[str, str], str] = {}
    several = len(records) > 1
    for record in sorted(records, key=lambda r: r.started_at):
        run_name = record.label or record.run_id[:8]
        for case in record.cases:
            if case.status != "ok" or case.throughput is None:
                continue
            key = case.key
            group = (record.run_id, key.pair_key())
            label = _group_label(key)
            labels[group] = label + (f"\n{record.backend} {run_name}" if several else "")
            data[key.workload].setdefault(group, {})[key.mode] = (
                case.throughput.value,
                case.throughput.unit,
            )
    workloads = sorted(data)
    with literal_figure(figsize=_figsize(max(len(workloads), 1))) as figure:
        _draw_throughput(figure, data, labels, workloads, several)
        return _save(figure, out_dir, "throughput")


def _draw_throughput(
    figure: Figure,
    data: dict[str, dict[tuple[str, str], dict[str, tuple[float, str]]]],
    labels: dict[tuple[str, str], str],
    workloads: list[str],
    several: bool,
) -> None:
    """One panel of grouped bars (a bar per mode) per workload, on `figure`."""
    figure.suptitle("train vs infer throughput", fontsize=12)
    grid = figure.subplots(max(len(workloads), 1), 1, squeeze=False)
    if not workloads:
        grid[0, 0].text(0.5, 0.5, "no successful cases", ha="center", va="center")
        grid[0, 0].set_axis_off()
    for axes, workload in zip(grid[:, 0], workloads, strict=False):
        groups = data[workload]
        modes = sorted({mode for entry in groups.values() for mode in entry})
        units = sorted({unit for entry in groups.values() for _, unit in entry.values()})
        width = 0.8 / len(modes)
        for index, mode in enumerate(modes):
            xs = [g + (index - (len(modes) - 1) / 2) * width for g in range(len(groups))]
            values = [entry.get(mode, (0.0, ""))[0] for entry in groups.values()]
            bars = axes.bar(xs, values, width=width, label=mode)
            axes.bar_label(bars, fmt="%.3g", fontsize=7)
        axes.set_xticks(range(len(groups)), [labels[g] for g in groups], fontsize=8)
        axes.set_title(workload, fontsize=10)
        axes.set_ylabel(f"throughput ({', '.join(units)})")
        axes.set_xlabel("dtype, batch, preset" + (", run" if several else ""))
        axes.grid(axis="y", alpha=0.3)
        axes.legend(title="mode", fontsize=8)
