"""The `bench` command: one Typer app; each command lives in its own module."""

from __future__ import annotations

import sys

import typer
from rich.console import Console

from backends.registry import BackendError
from harness.cli import doctor_cmd, list_cmd, report_cmd, run_cmd
from harness.errors import BenchError
from workloads.base import WorkloadError

app = typer.Typer(
    name="bench",
    help="accelbench: is training as good as inference on this accelerator?",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("run")(run_cmd.run_command)
app.add_typer(list_cmd.app, name="list")
app.command("doctor")(doctor_cmd.doctor)
app.command("report")(report_cmd.report_command)

USER_ERRORS = (BenchError, BackendError, WorkloadError)


def main() -> None:
    """Entry point: user errors print one paragraph on stderr and exit 2, never a traceback."""
    try:
        app()
    except USER_ERRORS as exc:
        Console(stderr=True).print(f"[bold red]error:[/] {exc}", highlight=False, markup=True)
        sys.exit(2)
