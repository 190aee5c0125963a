"""Results as a pandas DataFrame: one row per case per run, run metadata on every row."""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.results.schema import CaseResult, RunRecord
from harness.results.store import load_runs as load_records

if TYPE_CHECKING:
    import pandas as pd

RUN_COLUMNS = (
    "run_id",
    "started_at",
    "finished_at",
    "run_status",
    "label",
    "backend",
    "device",
    "device_count",
    "host",
    "cpu_model",
    "git_commit",
    "torch_version",
    "torch_threads",
    "accelbench_version",
)
CASE_COLUMNS = (
    "case_id",
    "workload",
    "workload_version",
    "mode",
    "dtype",
    "batch",
    "preset",
    "params",
    "compile",
    "nproc",
    "status",
    "error_kind",
    "error",
    "median_s",
    "ci95_low_s",
    "ci95_high_s",
    "rounds",
    "ci95_within_round_low_s",
    "ci95_within_round_high_s",
    "mean_s",
    "stdev_s",
    "iqr_s",
    "samples",
    "stability",
    "throughput",
    "throughput_unit",
    "flops_per_step",
    "achieved_flops",
    "mfu",
    "peak_memory_bytes",
)
COLUMNS = RUN_COLUMNS + CASE_COLUMNS


def _run_fields(record: RunRecord) -> dict[str, Any]:
    env = record.environment
    return {
        "run_id": record.run_id,
        "started_at": record.started_at,
        "finished_at": record.finished_at,
        "run_status": record.status,
        "label": record.label,
        "backend": record.backend,
        "device": record.device.name,
        "device_count": record.device.count,
        "host": env.hostname,
        "cpu_model": env.cpu_model,
        "git_commit": env.git_commit,
        "torch_version": env.torch_version,
        "torch_threads": env.torch_threads,
        "accelbench_version": env.accelbench_version,
    }


def _case_fields(case: CaseResult) -> dict[str, Any]:
    key, m = case.key, case.measurement
    return {
        "case_id": key.id,
        "workload": key.workload,
        "workload_version": key.workload_version,
        "mode": key.mode,
        "dtype": key.dtype,
        "batch": key.batch,
        "preset": key.preset,
        "params": key.params_text(),
        "compile": key.compile,
        "nproc": key.nproc,
        "status": case.status,
        "error_kind": case.error.kind if case.error else None,
        "error": case.error.message if case.error else None,
        "median_s": m.median if m else None,
        "ci95_low_s": m.ci95[0] if m else None,
        "ci95_high_s": m.ci95[1] if m else None,
        "rounds": m.rounds if m else None,
        "ci95_within_round_low_s": m.ci95_within_round[0] if m and m.ci95_within_round else None,
        "ci95_within_round_high_s": m.ci95_within_round[1] if m and m.ci95_within_round else None,
        "mean_s": m.mean if m else None,
        "stdev_s": m.stdev if m else None,
        "iqr_s": m.iqr if m else None,
        "samples": m.n if m else 0,
        "stability": m.stability if m else None,
        "throughput": case.throughput.value if case.throughput else None,
        "throughput_unit": case.throughput.unit if case.throughput else None,
        "flops_per_step": case.flops_per_step,
        "achieved_flops": case.achieved_flops,
        "mfu": case.mfu,
        "peak_memory_bytes": case.peak_memory_bytes,
    }


def records_frame(records: Iterable[RunRecord]) -> pd.DataFrame:
    """A tidy frame of the given runs: one row per case per run, columns COLUMNS.

    Times are seconds per iteration; `started_at` is a timezone-aware timestamp; `params` is
    the case's parameters as sorted JSON text.
    """
    import pandas as pd

    rows = [
        {**_run_fields(record), **_case_fields(case)} for record in records for case in record.cases
    ]
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    for column in ("started_at", "finished_at"):
        frame[column] = pd.to_datetime(frame[column], utc=True)
    return frame


def load_runs(paths_or_folders: Path | str | Iterable[Path | str]) -> pd.DataFrame:
    """Every run in the given results files and folders as a tidy DataFrame (oldest first).

    Unusable files inside a folder are skipped with a Python warning naming each file; an
    unusable file named explicitly raises harness.errors.BenchError. Nothing read is executed.
    """
    if isinstance(paths_or_folders, (str, Path)):
        paths_or_folders = [paths_or_folders]
    records, skipped = load_records(paths_or_folders)
    for message in skipped:
        warnings.warn(message, UserWarning, stacklevel=2)
    frame = records_frame(records)
    frame.attrs["skipped"] = list(skipped)
    return frame
