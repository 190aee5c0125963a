"""`bench export RUN --format csv|parquet|pytest-benchmark [--out PATH]`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from harness.cli.inputs import resolve_run
from harness.errors import BenchError
from harness.results.export import FORMATS, default_export_path, export_run


def export_command(
    run: Annotated[Path, typer.Argument(help="Results file, or a folder (its latest run).")],
    format: Annotated[str, typer.Option("--format", help="csv | parquet | pytest-benchmark.")],
    out: Annotated[
        Path | None, typer.Option(help="Output file (default: <time>-<run id>.<ext> here).")
    ] = None,
) -> None:
    """Export one run: a tidy table (CSV, Parquet) or a pytest-benchmark JSON file that
    `pytest-benchmark compare FILE` renders."""
    if format not in FORMATS:
        raise BenchError(f"unknown export format '{format}'; choose from: {', '.join(FORMATS)}.")
    _, record = resolve_run(run)
    path = export_run(record, format, out or default_export_path(record, format))  # type: ignore[arg-type]
    Console().print(f"wrote {escape(str(path))}", highlight=False)
