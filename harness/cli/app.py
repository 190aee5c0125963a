"""The `bench` command: one Typer app; each command lives in its own module."""

from __future__ import annotations

import sys

import typer
from rich.console import Console
from rich.markup import escape

from backends.registry import BackendError
from harness.cli import (
    check_cmd,
    compare_cmd,
    doctor_cmd,
    export_cmd,
    list_cmd,
    plot_cmd,
    report_cmd,
    run_cmd,
)
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
app.command("check-backend")(check_cmd.check_backend)
app.command("compare")(compare_cmd.compare_command)
app.command("plot")(plot_cmd.plot_command)
app.command("export")(export_cmd.export_command)
app.command("report")(report_cmd.report_command)

USER_ERRORS = (BenchError, BackendError, WorkloadError)


def main() -> None:
    """Entry point: user errors print one paragraph on stderr and exit 2, never a traceback."""
    try:
        app()
    except USER_ERRORS as exc:
        Console(stderr=True).print(
            f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True
        )
        sys.exit(2)
