"""What `bench run` prints about the answer: the fidelity table and where the report is."""

from __future__ import annotations

import shlex

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from harness.results.fidelity import FidelityResult
from harness.run.session import RunOutcome

_VERDICT_STYLE = {"pass": "green", "warn": "yellow", "fail": "red", "skipped": "dim"}


def fidelity_table(results: list[FidelityResult]) -> Table:
    """One row per fidelity check: deviations, determinism, verdict and reasons."""
    table = Table(title="training fidelity")
    for column in (
        "check",
        "steps",
        "loss dev (x initial loss)",
        "grad-norm dev (x median)",
        "routing mismatch",
        "bitwise",
        "verdict",
    ):
        table.add_column(column, overflow="fold")
    for r in results:
        style = _VERDICT_STYLE.get(r.verdict, "")
        verdict = f"[{style}]{r.verdict}[/]"
        if r.reasons:
            verdict += " " + escape("; ".join(r.reasons))
        table.add_row(
            escape(r.id),
            str(r.steps),
            _number(r.max_rel_loss_deviation),
            _number(r.max_rel_grad_norm_deviation),
            _number(r.max_routing_mismatch),
            "-" if r.deterministic is None else ("yes" if r.deterministic else "no"),
            verdict,
        )
    return table


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.2g}"


def report_hint(console: Console, outcome: RunOutcome, default_suite: bool) -> None:
    """After the default suite, write the report beside the results file; always print the
    `bench report` command that makes it. A report that cannot be written only warns."""
    folder = outcome.path.with_name(outcome.path.stem + "-report")
    command = shlex.join(["bench", "report", str(outcome.path), "--out", str(folder)])
    if default_suite:
        try:
            from harness.report.build import write_report

            paths = write_report([outcome.record], folder)
            console.print(f"report: {escape(str(paths.html))} and {escape(str(paths.markdown))}")
        except Exception as exc:  # the results are safe on disk; the report is a convenience
            console.print(f"[yellow]could not write the report: {escape(str(exc))}")
    console.print(f"make the report with: {escape(command)}")
