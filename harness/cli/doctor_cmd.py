"""`bench doctor`."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from backends.registry import get_backend
from harness.measurement.doctor import run_doctor

COLOURS = {"pass": "green", "warn": "yellow", "fail": "red", "info": "blue"}


def doctor(
    backend: Annotated[str, typer.Option(help="Backend whose timer to validate.")] = "cpu",
) -> None:
    """Warn about benchmarking hazards here and validate the harness's timing."""
    checks = run_doctor(get_backend(backend))
    table = Table(title="bench doctor")
    for column in ("check", "value", "verdict", "detail"):
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
