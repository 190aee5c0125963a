"""`bench list backends|workloads`."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from backends.registry import list_backends
from workloads.registry import all_workloads, plugin_errors

app = typer.Typer(help="List backends or workloads.", no_args_is_help=True)


@app.command("backends")
def backends() -> None:
    """Every backend with ok / unavailable and the reason."""
    table = Table(title="backends")
    for column in ("name", "status", "source", "reason"):
        table.add_column(column)
    for entry in list_backends():
        status = "[green]ok[/]" if entry.availability.ok else "[yellow]unavailable[/]"
        table.add_row(
            escape(entry.name), status, escape(entry.source), escape(entry.availability.explain())
        )
    Console(width=200).print(table)


@app.command("workloads")
def workloads() -> None:
    """Every workload with its modes and presets."""
    table = Table(title="workloads")
    for column in ("name", "modes", "presets", "description"):
        table.add_column(column)
    for name, cls in all_workloads().items():
        table.add_row(
            escape(name), ", ".join(cls.modes), ", ".join(cls.presets), escape(cls.description)
        )
    for name, error in plugin_errors().items():
        table.add_row(escape(name), "-", "-", f"[red]broken plugin:[/] {escape(error)}")
    Console(width=200).print(table)
