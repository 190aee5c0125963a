"""`bench plot RESULTS... [--history]`: throughput bars, or history with change points."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from harness.cli.inputs import load_inputs
from harness.errors import BenchError
from harness.report.plots import plot_history, plot_throughput


def plot_command(
    results: Annotated[list[Path], typer.Argument(help="Results files or folders.")],
    history: Annotated[
        bool, typer.Option("--history", help="Median of each case over runs, change points.")
    ] = False,
    by: Annotated[str, typer.Option(help="History x axis: time | commit.")] = "time",
    out: Annotated[Path, typer.Option(help="Folder for the PNG and SVG files.")] = Path("plots"),
) -> None:
    """Without --history: train vs infer throughput bars per workload for the runs given.
    With --history: per case, its median over runs with the 95% CI band and detected change
    points marked. Writes PNG and SVG."""
    if by not in ("time", "commit"):
        raise BenchError(f"unknown --by '{by}'; choose from: time, commit.")
    records = [record for _, record in load_inputs(results)]
    console = Console()
    if history:
        paths, histories = plot_history(records, out, by=by)  # type: ignore[arg-type]
        for case in histories:
            for point in case.change_points:
                when = case.points[point.index].started_at
                console.print(
                    f"change point: {escape(case.title)} at run of {when:%Y-%m-%d %H:%M} UTC "
                    f"({point.relative_change:+.1%})",
                    highlight=False,
                )
        if len(records) < 4:
            console.print(
                f"[yellow]note:[/] {len(records)} runs; change points need at least 2 runs on "
                "each side of a step."
            )
    else:
        paths = plot_throughput(records, out)
    for path in paths:
        console.print(f"wrote {escape(str(path))}", highlight=False)
