"""The distributed parts of `bench run`'s output: per-size busbw, per-rank, scaling."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from harness.cli.run_cmd import format_seconds as _seconds
from harness.results.schema import CaseResult, RunRecord


def _size(count: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if count >= scale:
            return f"{count / scale:g} {unit}"
    return f"{count} B"


def collectives_table(cases: list[CaseResult]) -> Table:
    """One row per collective and message size: time, algbw, busbw (GB/s = 1e9 B/s)."""
    table = Table(title="collectives (nccl-tests busbw)")
    for column in ("case", "size", "time", "algbw GB/s", "busbw GB/s"):
        table.add_column(column)
    for case in cases:
        for point in case.collectives or []:
            table.add_row(
                escape(case.key.id),
                _size(point.size_bytes),
                _seconds(point.median_s),
                f"{point.algbw / 1e9:.3g}",
                f"{point.busbw / 1e9:.3g}",
            )
    return table


def per_rank_table(cases: list[CaseResult]) -> Table:
    """Each rank's own median per case, next to the step time (max over ranks)."""
    table = Table(title="per-rank medians (step time = max over ranks per sample)")
    for column in ("case", "step time", "ranks"):
        table.add_column(column, overflow="fold")
    for case in cases:
        if not case.per_rank or not case.measurement:
            continue
        ranks = ", ".join(f"{t.rank}: {_seconds(t.median)}" for t in case.per_rank)
        table.add_row(escape(case.key.id), _seconds(case.measurement.median), ranks)
    return table


def scaling_table(cases: list[CaseResult]) -> Table:
    """Throughput and scaling efficiency per world size."""
    table = Table(title="scaling efficiency = (throughput_N / N) / (throughput_1 / 1)")
    for column in ("case", "world", "throughput", "efficiency"):
        table.add_column(column)
    for case in cases:
        if case.scaling_efficiency is None or case.throughput is None:
            continue
        table.add_row(
            escape(case.key.model_copy(update={"nproc": 1}).id),
            str(case.key.nproc),
            f"{case.throughput.value:.4g} {escape(case.throughput.unit)}",
            f"{case.scaling_efficiency:.1%}",
        )
    return table


def print_distributed(console: Console, record: RunRecord) -> None:
    """Print the distributed tables that apply to this run (nothing for a 1-process run)."""
    if record.distributed is None:
        return
    info = record.distributed
    console.print(
        f"distributed: {escape(info.dist_backend)}, world size "
        f"{', '.join(map(str, info.world_sizes))}, {info.nnodes} node(s), "
        f"{info.threads_per_rank} thread(s) per rank, via {info.launcher}"
    )
    if any(c.per_rank for c in record.cases):
        console.print(per_rank_table(record.cases))
    if any(c.collectives for c in record.cases):
        console.print(collectives_table(record.cases))
    if any(c.scaling_efficiency is not None for c in record.cases):
        console.print(scaling_table(record.cases))
