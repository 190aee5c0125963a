"""Figures from results: history of each case's median with change points, and train vs
infer throughput bars. matplotlib with the Agg backend; every figure saved as PNG and SVG."""

from __future__ import annotations

import functools
import math
import textwrap
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Literal, ParamSpec, TypeVar

from harness.analysis.changepoints import ChangePoint, detect_change_points
from harness.errors import BenchError
from harness.results.schema import RunRecord
from harness.results.store import prepare_out_dir
from harness.units import time_unit

P = ParamSpec("P")
R = TypeVar("R")

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


def case_histories(records: Sequence[RunRecord]) -> list[CaseHistory]:
    """Group successful cases by (backend, device, case key) over runs and detect steps."""
    grouped: dict[str, CaseHistory] = {}
    for record in sorted(records, key=lambda r: r.started_at):
        for case in record.cases:
            m = case.measurement
            if case.status != "ok" or m is None:
                continue
            title = f"{case.key.id} on {record.backend} ({record.device.name})"
            if case.key.params:
                params = ",".join(f"{k}={v}" for k, v in sorted(case.key.params.items()))
                title = f"{case.key.id} [{params}] on {record.backend} ({record.device.name})"
            history = grouped.setdefault(title, CaseHistory(title))
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


def _new_figure(rows: int, width: float = 10.0, row_height: float = 3.2) -> Figure:
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib.figure import Figure

    return Figure(figsize=(width, max(row_height * rows, 3.0)), layout="constrained")


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


def _literal_text(draw: Callable[P, R]) -> Callable[P, R]:
    """Run `draw` with matplotlib's mathtext off: names and labels from results files are
    drawn as written (a `$\\frac$` in a label would otherwise abort the plot)."""

    @functools.wraps(draw)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        import matplotlib

        with matplotlib.rc_context({"text.parse_math": False}):
            return draw(*args, **kwargs)

    return wrapper


@_literal_text
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
    figure = _new_figure(rows, width=10.0 * columns if columns < 3 else 24.0)
    figure.suptitle(f"accelbench history: {len(records)} runs", fontsize=12)
    grid = figure.subplots(rows, columns, squeeze=False)
    for index, axes in enumerate(grid.flat):
        if index < len(histories):
            _plot_history(axes, histories[index], by)
        else:
            axes.set_visible(False)
    return _save(figure, out_dir, "history"), histories


@_literal_text
def plot_throughput(records: Sequence[RunRecord], out_dir: Path) -> list[Path]:
    """Per workload, grouped bars of throughput by mode (train vs infer, and any other mode)
    for each dtype/batch/preset of each run. Writes throughput.png and throughput.svg."""
    # workload -> group label -> mode -> (value, unit)
    data: dict[str, dict[str, dict[str, tuple[float, str]]]] = defaultdict(dict)
    several = len(records) > 1
    for record in sorted(records, key=lambda r: r.started_at):
        run_name = record.label or record.run_id[:8]
        for case in record.cases:
            if case.status != "ok" or case.throughput is None:
                continue
            key = case.key
            group = f"{key.dtype} b{key.batch} {key.preset}" + ("\ncompiled" if key.compile else "")
            if several:
                group += f"\n{record.backend} {run_name}"
            data[key.workload].setdefault(group, {})[key.mode] = (
                case.throughput.value,
                case.throughput.unit,
            )
    workloads = sorted(data)
    figure = _new_figure(max(len(workloads), 1))
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
        axes.set_xticks(range(len(groups)), list(groups), fontsize=8)
        axes.set_title(workload, fontsize=10)
        axes.set_ylabel(f"throughput ({', '.join(units)})")
        axes.set_xlabel("dtype, batch, preset" + (", run" if several else ""))
        axes.grid(axis="y", alpha=0.3)
        axes.legend(title="mode", fontsize=8)
    return _save(figure, out_dir, "throughput")
