"""`bench compare BASE NEW`: per-case verdicts with significance, and a regression gate."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from harness.analysis.compare import (
    DEFAULT_THRESHOLD,
    GATE_VERDICTS,
    CaseComparison,
    RunComparison,
    Thresholds,
    compare_runs,
    load_thresholds,
    parse_threshold,
)
from harness.analysis.scenario_compare import ScenarioComparison, compare_scenarios
from harness.cli.inputs import resolve_run
from harness.cli.run_cmd import format_seconds
from harness.errors import BenchError
from harness.results.schema import RunRecord

_STYLE = {
    "regressed": "[bold red]regressed[/]",
    "failed": "[bold red]failed[/]",
    "improved": "[green]improved[/]",
    "noisy": "[yellow]~ noisy[/]",
    "unchanged": "unchanged",
    "not comparable": "[magenta]not comparable[/]",
    "missing": "[dim]missing[/]",
    "new": "[cyan]new[/]",
}


def _describe(path: Path, record: RunRecord) -> str:
    label = f" '{record.label}'" if record.label else ""
    return (
        f"{path} (run {record.run_id[:8]}{label}, {record.started_at:%Y-%m-%d %H:%M:%S} UTC, "
        f"{record.status})"
    )


def _median(entry: CaseComparison, which: str) -> str:
    case = entry.base if which == "base" else entry.new
    if case is None or case.measurement is None:
        return "-"
    return format_seconds(case.measurement.median)


def comparison_table(result: RunComparison) -> Table:
    """One row per case: medians, ratio new/base with its 95% CI, p-value, verdict."""
    table = Table(title="new vs base (time per iteration; ratio > 1 is slower)")
    for column in ("case", "base median", "new median", "ratio (95% CI)", "p", "limit", "verdict"):
        table.add_column(column, overflow="fold")
    for entry in result.cases:
        if entry.ratio is not None and entry.ratio_ci95 is not None:
            low, high = entry.ratio_ci95
            ratio = f"{entry.ratio:.3f} ({low:.3f}-{high:.3f})"
        else:
            ratio = "-"
        p_value = f"{entry.p_value:.2g}" if entry.p_value is not None else "-"
        limit = f"±{entry.threshold:.0%}" if entry.threshold is not None else "-"
        verdict = _STYLE[entry.verdict]
        if entry.reason:
            verdict += f": {escape(entry.reason)}"
        table.add_row(
            escape(entry.case_id),
            _median(entry, "base"),
            _median(entry, "new"),
            ratio,
            p_value,
            limit,
            verdict,
        )
    return table


def scenario_comparison_table(rows: list[ScenarioComparison]) -> Table:
    """One row per compared scenario figure: base, new, ratio with its 95% CI, p, verdict."""
    table = Table(title="inference scenarios, new vs base (latency ratio > 1 is slower)")
    for column in ("case", "figure", "base", "new", "ratio (95% CI)", "p", "verdict"):
        table.add_column(column, overflow="fold")
    for row in rows:
        rate = "rate" in row.figure or "throughput" in row.figure
        shown = [
            "-" if v is None else (f"{v:.4g} req/s" if rate else format_seconds(v))
            for v in (row.base, row.new)
        ]
        ratio = "-" if row.ratio is None else f"{row.ratio:.3f}"
        if row.ratio_ci95 is not None:
            ratio += f" ({row.ratio_ci95[0]:.3f}-{row.ratio_ci95[1]:.3f})"
        verdict = _STYLE[row.verdict] + (f": {escape(row.reason)}" if row.reason else "")
        p_value = f"{row.p_value:.2g}" if row.p_value is not None else "-"
        table.add_row(escape(row.case_id), row.figure, *shown, ratio, p_value, verdict)
    return table


def compare_command(
    base: Annotated[Path, typer.Argument(help="Base results file, or a folder (its latest run).")],
    new: Annotated[Path, typer.Argument(help="New results file, or a folder (its latest run).")],
    threshold: Annotated[
        str | None,
        typer.Option(help="Smallest change that counts, e.g. 5% or 0.05 (default 5%)."),
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
    """Compare two runs case by case. A change counts only when Mann-Whitney U on the raw
    samples gives p < 0.05 and the 95% CI of the ratio of medians lies wholly beyond the
    threshold; big but unproven changes show as ~ noisy."""
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
    result = compare_runs(base_run, new_run, limits)
    if result.differences:
        console.print("[bold yellow]the runs differ in:[/]")
        for line in result.differences:
            console.print(f"  - {escape(line)}", highlight=False)
    else:
        console.print("same machine, device and libraries.")
    console.print(comparison_table(result))
    counts = ", ".join(f"{count} {verdict}" for verdict, count in result.counts().items())
    console.print(f"verdicts: {counts or 'no cases'}")
    scenarios = compare_scenarios(base_run, new_run, limits)
    if scenarios:
        console.print(scenario_comparison_table(scenarios))
    failures = [entry.case_id for entry in result.gate_failures()]
    failures += [f"{row.case_id} {row.figure}" for row in scenarios if row.verdict in GATE_VERDICTS]
    if failures:
        names = ", ".join(escape(name) for name in failures)
        console.print(f"[bold red]{len(failures)} case(s) regressed or failed:[/] {names}")
        if fail_on_regression:
            raise typer.Exit(1)
