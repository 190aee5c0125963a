"""`bench doctor`."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from backends.registry import get_backend
from harness.measurement.doctor import DRIFT_S, run_doctor

COLOURS = {"pass": "green", "warn": "yellow", "fail": "red", "info": "blue"}


def doctor(
    backend: Annotated[str, typer.Option(help="Backend whose timer to validate.")] = "cpu",
    drift_s: Annotated[
        float,
        typer.Option(
            min=0.0,
            help="Seconds to watch a fixed matmul for drift (0: skip); default 20.",
        ),
    ] = DRIFT_S,
) -> None:
    """Warn about benchmarking hazards here, validate the harness's timing, and measure how
    much this machine drifts (the smallest change a comparison can resolve here)."""
    checks = run_doctor(get_backend(backend), drift_s=drift_s)
    table = Table(title="bench doctor")
    table.add_column("check", no_wrap=True)  # one line each: greppable names
    for column in ("value", "verdict", "detail"):
        table.add_column(column, overflow="fold")
    for check in checks:
        colour = COLOURS[check.verdict]
        table.add_row(
            escape(check.name),
            escape(check.value),
            f"[{colour}]{check.verdict}[/]",
            escape(check.detail),
        )
    console = Console(width=160)
    console.print(table)
    failed = [c for c in checks if c.verdict == "fail"]
    warned = [c for c in checks if c.verdict == "warn"]
    if failed:
        console.print(f"[red]verdict: {len(failed)} check(s) failed; timings here are suspect.")
        raise typer.Exit(1)
    console.print(
        f"[yellow]verdict: usable, with {len(warned)} warning(s)."
        if warned
        else "[green]verdict: this machine and harness are fit for benchmarking."
    )
