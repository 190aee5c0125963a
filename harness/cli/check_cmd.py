"""`bench check-backend NAME`: the conformance kit against one backend."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from harness.conformance import CheckResult, KitReport, run_kit
from harness.conformance.deep import DEEP_TIMEOUT_S, run_deep
from harness.conformance.kit import DEFAULT_TIMEOUT_S
from harness.errors import BenchError
from harness.results.store import prepare_out_dir

COLOURS = {"pass": "green", "fail": "red", "skip": "yellow"}


def report_table(report: KitReport, title: str = "conformance") -> Table:
    """One row per check: status, time and the reason (the figure behind a line)."""
    table = Table(title=f"{title} of backend '{escape(report.backend)}'")
    for column in ("check", "status", "time", "reason"):
        table.add_column(column, overflow="fold")
    for result in report.results:
        colour = COLOURS[result.status]
        status = f"[{colour}]{result.status}[/]" + ("" if result.required else " (optional)")
        table.add_row(escape(result.name), status, f"{result.seconds:.2f} s", escape(result.reason))
    return table


def check_backend(
    name: Annotated[str, typer.Argument(help="Backend name (see `bench list backends`).")],
    timeout: Annotated[
        float, typer.Option(help="Seconds one check may take before it fails as hung.")
    ] = DEFAULT_TIMEOUT_S,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Also write the report as JSON here.")
    ] = None,
    isolate: Annotated[
        str,
        typer.Option(
            help="worker: checks run in a worker process (a crash fails only that check); "
            "none: in this process."
        ),
    ] = "worker",
    deep: Annotated[
        bool,
        typer.Option(
            "--deep",
            help="Run the device acceptance table instead of the contract kit: timing against "
            "one event pair, loop overhead, yardsticks, GEMM MFU, profiler, energy, settings, "
            "a small suite, a base gpt run, the moe memory refusal (docs/accelerators.md).",
        ),
    ] = False,
) -> None:
    """Run the conformance kit against a backend: exit 0 when every required check passes,
    1 when one fails, 2 when the backend is unknown or unavailable here. With --deep, the
    device acceptance table instead (same exit codes)."""
    if timeout <= 0:
        raise BenchError(f"--timeout must be a positive number of seconds; got {timeout:g}.")
    if isolate not in ("worker", "none"):
        raise BenchError(f"--isolate expects worker or none; got '{isolate}'.")
    if json_out is not None:
        prepare_out_dir(json_out.parent)
    console = Console(width=None if sys.stdout.isatty() else 160)

    def progress(result: CheckResult) -> None:
        if not sys.stdout.isatty():
            return
        console.print(f"{escape(result.name)}: {result.status}")

    if deep:
        limit = timeout if timeout != DEFAULT_TIMEOUT_S else DEEP_TIMEOUT_S
        report = run_deep(name, timeout_s=limit, on_result=progress)
        title = "device acceptance"
    else:
        report = run_kit(name, timeout_s=timeout, on_result=progress, isolate=isolate)  # type: ignore[arg-type]
        title = "conformance"
    console.print(report_table(report, title))
    if json_out is not None:
        json_out.write_text(report.model_dump_json(indent=2) + "\n", encoding="utf-8")
    counts = ", ".join(f"{report.count(s)} {s}" for s in ("pass", "fail", "skip"))
    verdict = (
        ("passes its acceptance run", "fails its acceptance run")
        if deep
        else (
            "conforms",
            "does not conform",
        )
    )
    if report.passed:
        console.print(
            f"[green]backend '{escape(name)}' {verdict[0]}[/] ({counts}, {report.seconds:.1f} s)"
        )
        return
    console.print(
        f"[red]backend '{escape(name)}' {verdict[1]}[/] ({counts}, {report.seconds:.1f} s)"
    )
    raise typer.Exit(1)
