"""The inference figures a buyer asks for, from stored scenario results: latency and
throughput per scenario, the latency-vs-rate curve, and the max request rate at the p99
targets ("serves N req/s at p99 TPOT <= X ms"). Pure over RunRecords (no torch, no I/O)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from harness.analysis.answer import group_systems
from harness.results.schema import RunRecord, ScenarioPoint, ScenarioResult
from harness.units import format_rate, format_seconds

_METRIC_NAMES = {"ttft": "TTFT", "tpot": "TPOT", "latency": "latency"}


class CurvePoint(BaseModel):
    """One server run: offered rate, achieved rate, p99 of each metric (seconds)."""

    rate: float
    achieved_rate: float
    p99: dict[str, float]
    meets_target: bool | None = None


class ServingRow(BaseModel):
    """The scenarios of one system/workload/dtype/max batch/preset (the latest run's)."""

    system: str
    workload: str
    dtype: str
    max_batch: int
    preset: str
    status: str
    error: str | None = None
    single_stream_p99: dict[str, float] = Field(default_factory=dict)
    single_stream_rate: float | None = None
    offline_rate: float | None = None
    offline_tokens_per_s: float | None = None
    max_rate: float | None = None
    targets: dict[str, float] = Field(default_factory=dict)
    curve: list[CurvePoint] = Field(default_factory=list)
    search_note: str = ""

    @property
    def claim(self) -> str:
        """The buyer's sentence: 'serves 42.1 req/s at p99 TTFT <= 50 ms, p99 TPOT <= 20 ms'
        (or why it cannot be said)."""
        if self.status != "ok":
            return f"{self.status}: {self.error or 'no result'}"
        bounds = ", ".join(
            f"p99 {_METRIC_NAMES.get(m, m)} <= {format_seconds(v)}" for m, v in self.targets.items()
        )
        if self.max_rate is None:
            if not self.curve:
                return "no server search in this run"
            return f"meets no tested rate at {bounds}"
        return f"serves {format_rate(self.max_rate, 'req/s')} at {bounds}"


def _p99(point: ScenarioPoint) -> dict[str, float]:
    return {metric: stats.p99 for metric, stats in point.percentiles.items()}


def serving_row(system: str, result: ScenarioResult) -> ServingRow:
    """The report row of one stored scenario result."""
    key = result.key
    single, offline = result.single_stream, result.offline
    curve = sorted(
        (
            CurvePoint(
                rate=p.target_rate or p.achieved_rate,
                achieved_rate=p.achieved_rate,
                p99=_p99(p),
                meets_target=p.meets_target,
            )
            for p in result.server
        ),
        key=lambda c: c.rate,
    )
    return ServingRow(
        system=system,
        workload=key.workload,
        dtype=key.dtype,
        max_batch=key.batch,
        preset=key.preset,
        status=result.status,
        error=f"{result.error.kind}: {result.error.message}" if result.error else None,
        single_stream_p99=_p99(single) if single else {},
        single_stream_rate=single.achieved_rate if single else None,
        offline_rate=offline.achieved_rate if offline else None,
        offline_tokens_per_s=offline.tokens_per_s if offline else None,
        max_rate=result.max_rate,
        targets=result.targets,
        curve=curve,
        search_note=result.search_note,
    )


def serving_rows(records: list[RunRecord]) -> list[ServingRow]:
    """One row per system and scenario case; for a case run several times, the latest."""
    rows: list[ServingRow] = []
    for system_id, (_, runs) in group_systems(records).items():
        latest: dict[str, ScenarioResult] = {}
        for run in runs:  # oldest first: later runs replace earlier ones
            for result in run.scenarios:
                latest[result.key.id] = result
        rows += [serving_row(system_id, result) for result in latest.values()]
    return rows
