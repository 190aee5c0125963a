"""`bench compare BASE NEW`: per-case verdicts with significance, and a regression gate."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from harness.analysis.compare import (
    DEFAULT_THRESHOLD,
    GATE_VERDICTS,
    HISTORY_MIN_RUNS,
    Thresholds,
    compare_runs,
    load_thresholds,
    parse_threshold,
)
from harness.analysis.scenario_compare import compare_scenarios
from harness.cli.inputs import resolve_run
from harness.cli.tables import (
    comparison_table,
    convergence_comparison_table,
    scenario_comparison_table,
)
from harness.errors import BenchError
from harness.results.convergence_judge import compare_runs_convergence
from harness.results.schema import RunRecord
from harness.results.store import load_runs


def _describe(path: Path, record: RunRecord) -> str:
    label = f" '{record.label}'" if record.label else ""
    return (
        f"{path} (run {record.run_id[:8]}{label}, {record.started_at:%Y-%m-%d %H:%M:%S} UTC, "
        f"{record.status})"
    )


def _history(*given: Path) -> list[RunRecord]:
    """Every readable run in the folders of the given paths (a folder, or a file's folder):
    compare_runs takes those on the same machine started before the new run as the case
    history. Unreadable files there are skipped silently: they were not named."""
    folders = sorted({path if path.is_dir() else path.parent for path in given})
    runs, _ = load_runs(folders)
    return runs


def compare_command(
    base: Annotated[Path, typer.Argument(help="Base results file, or a folder (its latest run).")],
    new: Annotated[Path, typer.Argument(help="New results file, or a folder (its latest run).")],
    threshold: Annotated[
        str | None,
        typer.Option(help="Smallest change that counts, e.g. 5% or 0.05 (default 10%)."),
    ] = None,
    thresholds: Annotated[
        Path | None,
        typer.Option(
            help="TOML/JSON thresholds file: a default and per workload (docs/analysis.md)."
        ),
    ] = None,
    fail_on_regression: Annotated[
        bool,
        typer.Option("--fail-on-regression", help="Exit 1 when any case regressed or broke."),
    ] = False,
) -> None:
    """Compare two runs case by case. A change counts only when it is significant (p < 0.05:
    Welch's t on per-round medians, or Mann-Whitney U for single-round files) and the 95% CI
    of the ratio of medians lies wholly beyond the threshold and beyond the spread of earlier
    runs in the same folders (3 or more, same machine); smaller or unproven changes show as
    ~ noisy with the noise floor."""
    try:
        default = parse_threshold(threshold) if threshold is not None else None
    except ValueError as exc:
        raise BenchError(f"--threshold: {exc}.") from None
    if thresholds is not None:
        limits = load_thresholds(thresholds, default)
    else:
        limits = Thresholds(default=default if default is not None else DEFAULT_THRESHOLD)
    base_path, base_run = resolve_run(base)
    new_path, new_run = resolve_run(new)
    console = Console(width=None if sys.stdout.isatty() else 160)
    console.print(f"base: {escape(_describe(base_path, base_run))}", highlight=False)
    console.print(f"new:  {escape(_describe(new_path, new_run))}", highlight=False)
    result = compare_runs(base_run, new_run, limits, history=_history(base, new))
    if result.differences:
        console.print("[bold yellow]the runs differ in:[/]")
        for line in result.differences:
            console.print(f"  - {escape(line)}", highlight=False)
    else:
        console.print("same machine, device and libraries.")
    console.print(comparison_table(result))
    counts = ", ".join(f"{count} {verdict}" for verdict, count in result.counts().items())
    console.print(f"verdicts: {counts or 'no cases'}")
    if result.machine_moved():
        named = ", ".join(f"{name} {ratio:.2f}x" for name, ratio in result.machine_moves().items())
        console.print(
            f"the machine itself moved between the runs (yardsticks read before each round, "
            f"median over cases: {named}; above 1 is slower in NEW): a change counts only if "
            f"it also stands relative to each yardstick that moved its way.",
            highlight=False,
        )
    scenarios = compare_scenarios(base_run, new_run, limits)
    if scenarios:
        console.print(scenario_comparison_table(scenarios))
    converged = compare_runs_convergence(base_run.cases, new_run.cases)
    if converged:
        console.print(convergence_comparison_table(converged))
    unseen = [
        entry
        for entry in result.cases
        if entry.ratio is not None and entry.history_runs < HISTORY_MIN_RUNS
    ]
    if unseen:
        console.print(
            f"{len(unseen)} case(s) had fewer than {HISTORY_MIN_RUNS} earlier runs on this "
            f"machine in these folders: their noise floor comes from the rounds of these two "
            f"runs only, which do not see run-to-run drift. Keep {HISTORY_MIN_RUNS} or more "
            f"runs in the folder to measure it.",
            highlight=False,
        )
    failures = [entry.case_id for entry in result.gate_failures()]
    failures += [f"{row.case_id} {row.figure}" for row in scenarios if row.verdict in GATE_VERDICTS]
    failures += [f"{row.case} steps to target" for row in converged if row.verdict == "regressed"]
    if failures:
        names = ", ".join(escape(name) for name in failures)
        console.print(f"[bold red]{len(failures)} case(s) regressed or failed:[/] {names}")
        if fail_on_regression:
            raise typer.Exit(1)
