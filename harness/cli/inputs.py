"""Reading results named on the command line: files or folders, skipped files reported."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.markup import escape

from harness.errors import BenchError
from harness.results.schema import RunRecord
from harness.results.store import load_runs_with_paths


def print_warnings(warnings: list[str]) -> None:
    """Each warning on stderr, on one unbroken line (file names stay greppable)."""
    console = Console(stderr=True)
    for message in warnings:
        console.print(f"[yellow]warning:[/] {escape(message)}", highlight=False, soft_wrap=True)


def load_inputs(paths: list[Path]) -> list[tuple[Path, RunRecord]]:
    """Every run in the files and folders given, oldest first; a warning on stderr for each
    unusable file inside a folder; BenchError for an unusable file named explicitly or when
    nothing usable was found."""
    loaded, warnings = load_runs_with_paths(paths)
    print_warnings(warnings)
    if not loaded:
        named = ", ".join(str(p) for p in paths)
        raise BenchError(f"no usable results file in {named}.")
    return loaded


def resolve_run(path: Path) -> tuple[Path, RunRecord]:
    """A results file, or the latest run (by start time) in a results folder."""
    return load_inputs([path])[-1]
