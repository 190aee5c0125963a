"""`bench report RESULTS... --out DIR`: the training-vs-inference report of one or more runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from harness.cli.inputs import print_warnings
from harness.errors import BenchError
from harness.results.fidelity_judge import rejudge_record
from harness.results.store import load_runs, prepare_out_dir


def report_command(
    results: Annotated[
        list[Path], typer.Argument(help="Results files or folders (several systems side by side).")
    ],
    out: Annotated[Path, typer.Option(help="Folder for report.md, report.html, figures/.")] = Path(
        "report"
    ),
) -> None:
    """Write report.md (figures beside it) and a self-contained report.html: the verdict per
    backend, train vs infer, training penalty, MFU, memory, fidelity and the roofline."""
    from harness.report.build import write_report  # matplotlib on use: keeps `bench` start-up fast

    records, warnings = load_runs(results)
    print_warnings(warnings)
    if not records:
        raise BenchError(
            f"no usable results in {', '.join(str(p) for p in results)}; "
            "run `bench run` first or name results files."
        )
    # Fidelity verdicts under the current bands: a band or scale change reaches stored runs.
    records = [rejudge_record(r) for r in records]
    paths = write_report(records, prepare_out_dir(out), warnings)
    where = f"{escape(str(paths.html))}, {escape(str(paths.markdown))}"
    Console().print(f"report of {len(records)} run(s): {where}", soft_wrap=True)
