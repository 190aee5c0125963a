"""Exports of one run: CSV and Parquet (the tidy frame of harness.results.frame) and the JSON shape
pytest-benchmark saves, so that `pytest-benchmark compare FILE` renders a run."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any, Literal

from harness.errors import BenchError
from harness.results.frame import records_frame
from harness.results.schema import CaseResult, RunRecord
from harness.results.store import prepare_out_dir

ExportFormat = Literal["csv", "parquet", "pytest-benchmark"]
FORMATS: tuple[ExportFormat, ...] = ("csv", "parquet", "pytest-benchmark")
SUFFIX: dict[ExportFormat, str] = {
    "csv": ".csv",
    "parquet": ".parquet",
    "pytest-benchmark": ".json",
}
PYTEST_BENCHMARK_VERSION = "5.1.0"
"""The pytest-benchmark JSON layout this export follows (unchanged from 3.x to 5.x)."""


def _quartile(data: list[float], lower: bool) -> float:
    """pytest-benchmark's Q1/Q3 (Wikipedia quartile methods 3 and 2), so stats match it."""
    rounds = len(data)
    if rounds == 1:
        return data[0]
    if rounds % 2:
        n, q = rounds // 4, rounds % 4
        if lower:
            return (
                0.25 * data[n - 1] + 0.75 * data[n]
                if q == 1
                else 0.75 * data[n] + 0.25 * data[n + 1]
            )
        if q == 1:
            return 0.75 * data[3 * n] + 0.25 * data[3 * n + 1]
        return 0.25 * data[3 * n + 1] + 0.75 * data[3 * n + 2]
    half = rounds // 2
    return statistics.median(data[:half] if lower else data[half:])


def pytest_benchmark_stats(samples: list[float]) -> dict[str, Any]:
    """The `stats` object pytest-benchmark stores for these per-iteration times (seconds)."""
    data = sorted(samples)
    mean = statistics.mean(data)
    stddev = statistics.stdev(data) if len(data) > 1 else 0.0
    q1, q3 = _quartile(data, True), _quartile(data, False)
    iqr = q3 - q1
    low_fence, high_fence = q1 - 1.5 * iqr, q3 + 1.5 * iqr
    inside = [x for x in data if low_fence <= x <= high_fence] or data
    stddev_outliers = sum(1 for x in data if x < mean - stddev or x > mean + stddev)
    iqr_outliers = sum(1 for x in data if x < low_fence or x > high_fence)
    total = sum(data)
    return {
        "min": data[0],
        "max": data[-1],
        "mean": mean,
        "stddev": stddev,
        "rounds": len(data),
        "median": statistics.median(data),
        "iqr": iqr,
        "q1": q1,
        "q3": q3,
        "iqr_outliers": iqr_outliers,
        "stddev_outliers": stddev_outliers,
        "outliers": f"{stddev_outliers};{iqr_outliers}",
        "ld15iqr": inside[0],
        "hd15iqr": inside[-1],
        "ops": len(data) / total if total else 0.0,
        "total": total,
    }


def _benchmark_entry(record: RunRecord, case: CaseResult) -> dict[str, Any]:
    assert case.measurement is not None
    key, m = case.key, case.measurement
    params: dict[str, Any] = {
        "mode": key.mode,
        "dtype": key.dtype,
        "batch": key.batch,
        "preset": key.preset,
        **{f"param.{name}": value for name, value in sorted(key.params.items())},
    }
    param = "-".join(str(value) for value in params.values())
    stats = pytest_benchmark_stats(m.samples_s)
    stats["data"] = list(m.samples_s)
    stats["iterations"] = m.iterations_per_sample
    extra: dict[str, Any] = {"workload_version": key.workload_version, "status": case.status}
    if case.throughput:
        extra["throughput"] = case.throughput.value
        extra["throughput_unit"] = case.throughput.unit
    if case.mfu is not None:
        extra["mfu"] = case.mfu
    if case.peak_memory_bytes is not None:
        extra["peak_memory_bytes"] = case.peak_memory_bytes
    return {
        "group": key.workload,
        "name": f"{key.workload}[{param}]",
        "fullname": f"accelbench/{record.backend}/{key.id}",
        "params": params,
        "param": param,
        "extra_info": extra,
        "options": {
            "disable_gc": False,
            "timer": "accelbench",
            "min_rounds": len(m.samples_s),
            "max_time": m.total_time_s,
            "min_time": 0.0,
            "warmup": m.warmup_iterations > 0,
        },
        "stats": stats,
    }


def pytest_benchmark_json(record: RunRecord) -> dict[str, Any]:
    """The run as a pytest-benchmark results file; failed cases are left out (as
    pytest-benchmark leaves out benchmarks with errors)."""
    env = record.environment
    machine, _, release = env.platform.partition("-")
    return {
        "machine_info": {
            "node": env.hostname,
            "processor": env.cpu_model,
            "machine": machine,
            "python_implementation": "CPython",
            "python_version": env.python,
            "release": release,
            "system": env.platform.split("-")[0],
            "cpu": {"brand_raw": env.cpu_model, "count": env.logical_cores},
            "accelbench": {
                "backend": record.backend,
                "device": record.device.name,
                "torch_version": env.torch_version,
                "torch_threads": env.torch_threads,
                "accelbench_version": env.accelbench_version,
                "run_id": record.run_id,
                "label": record.label,
            },
        },
        "commit_info": {
            "id": env.git_commit or "",
            "time": None,
            "author_time": None,
            "dirty": False,
            "project": "accelbench",
            "branch": None,
        },
        "benchmarks": [
            _benchmark_entry(record, case)
            for case in record.cases
            if case.status == "ok" and case.measurement is not None and case.measurement.n
        ],
        "datetime": record.started_at.isoformat(),
        "version": PYTEST_BENCHMARK_VERSION,
    }


def default_export_path(record: RunRecord, fmt: ExportFormat) -> Path:
    stamp = record.started_at.strftime("%Y%m%dT%H%M%SZ")
    short = "".join(ch for ch in record.run_id[:8] if ch.isalnum()) or "run"
    return Path(f"{stamp}-{short}{SUFFIX[fmt]}")


def export_run(record: RunRecord, fmt: ExportFormat, out: Path) -> Path:
    """Write `record` to `out` in `fmt`; BenchError for an unknown format or a missing pyarrow."""
    if fmt not in FORMATS:
        raise BenchError(f"unknown export format '{fmt}'; choose from: {', '.join(FORMATS)}.")
    prepare_out_dir(out.parent)
    if fmt == "pytest-benchmark":
        out.write_text(json.dumps(pytest_benchmark_json(record), indent=2), encoding="utf-8")
        return out
    frame = records_frame([record])
    if fmt == "csv":
        frame.to_csv(out, index=False)
        return out
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise BenchError(
            "exporting Parquet needs pyarrow, which is not installed. Install it with "
            "pip install 'accelbench[parquet]' (or choose --format csv)."
        ) from None
    frame.to_parquet(out, index=False)
    return out
