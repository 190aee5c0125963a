"""What endpoint runs add to the inference figures: per endpoint its server, the client's
own limit, failures, goodput and cost at the max rate, the audits, and the concurrency sweep
as throughput per device against interactivity (tokens/s per user) with its Pareto front.
Pure over RunRecords (no I/O)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from harness.analysis.answer import group_systems
from harness.results.endpoint import Audits
from harness.results.schema import RunRecord, ScenarioPoint, ScenarioResult


class SweepPoint(BaseModel):
    """One closed-loop point: concurrency, tokens/s per device, tokens/s per user."""

    concurrency: int
    throughput: float
    interactivity: float
    usd_per_million_tokens: float | None = None
    on_front: bool = False


class EndpointRow(BaseModel):
    """One endpoint (the latest run's result for its key) of one system."""

    system: str
    label: str
    server: str
    url: str
    model: str
    client_requests_per_s: float | None = None
    client_tokens_per_s: float | None = None
    issued: int = 0
    failed: int = 0
    errors: dict[str, int] = Field(default_factory=dict)
    goodput_at_max_rate: float | None = None
    usd_per_million_at_max_rate: float | None = None
    client_limited: bool = False
    sweep: list[SweepPoint] = Field(default_factory=list)
    audits: Audits = Field(default_factory=Audits)


def pareto_front(points: list[tuple[float, float]]) -> list[bool]:
    """For each (throughput, interactivity) pair, whether no other pair is at least as good
    in both and better in one (higher is better in both)."""
    front = []
    for i, (x, y) in enumerate(points):
        dominated = any(
            (a >= x and b >= y) and (a > x or b > y) for j, (a, b) in enumerate(points) if j != i
        )
        front.append(not dominated)
    return front


def _points(result: ScenarioResult) -> list[ScenarioPoint]:
    measured = [p for p in (result.single_stream, result.offline) if p]
    return measured + result.server + result.concurrency


def endpoint_row(system: str, result: ScenarioResult) -> EndpointRow | None:
    """The row of one stored endpoint result; None for an in-process one."""
    info = result.endpoint
    if info is None:
        return None
    extras = [p.endpoint for p in _points(result) if p.endpoint is not None]
    errors: dict[str, int] = {}
    for e in extras:
        for reason, count in e.errors.items():
            errors[reason] = errors.get(reason, 0) + count
    best = next((p for p in result.server if p.target_rate == result.max_rate), None)
    sweep = [
        SweepPoint(
            concurrency=p.endpoint.concurrency or 0,
            throughput=p.endpoint.tokens_per_s_per_device or 0.0,
            interactivity=p.endpoint.interactivity or 0.0,
            usd_per_million_tokens=p.endpoint.usd_per_million_tokens,
        )
        for p in result.concurrency
        if p.endpoint is not None and p.endpoint.interactivity
    ]
    front = pareto_front([(s.throughput, s.interactivity) for s in sweep])
    sweep = [s.model_copy(update={"on_front": f}) for s, f in zip(sweep, front, strict=True)]
    calibration = info.calibration
    return EndpointRow(
        system=system,
        label=info.label,
        server=info.server,
        url=info.url,
        model=info.model,
        client_requests_per_s=calibration.requests_per_s if calibration else None,
        client_tokens_per_s=calibration.tokens_per_s if calibration else None,
        issued=sum(e.issued for e in extras),
        failed=sum(e.failed for e in extras),
        errors=errors,
        goodput_at_max_rate=best.endpoint.goodput if best and best.endpoint else None,
        usd_per_million_at_max_rate=info.usd_per_million_at_max_rate,
        client_limited=any(e.client_limited for e in extras),
        sweep=sweep,
        audits=info.audits,
    )


def endpoint_rows(records: list[RunRecord]) -> list[EndpointRow]:
    """One row per system and endpoint; for an endpoint measured several times, the latest."""
    rows: list[EndpointRow] = []
    for system_id, (_, runs) in group_systems(records).items():
        latest: dict[str, ScenarioResult] = {}
        for run in runs:
            for result in run.scenarios:
                if result.endpoint is not None:
                    latest[result.key.identity()] = result
        rows += [r for r in (endpoint_row(system_id, x) for x in latest.values()) if r]
    return rows
