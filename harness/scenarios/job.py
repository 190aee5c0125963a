"""One scenario case, run in the isolation worker like any case: build the workload on the
backend, get its server, warm it up, then measure single-stream, offline and the server
(fixed rates, or the max-rate search). Failures become a failed ScenarioResult."""

from __future__ import annotations

import math
import time
from typing import Any

from pydantic import BaseModel, Field

from backends.base import Backend
from backends.registry import get_backend
from harness.errors import failed_result
from harness.measurement.guard import never_raises
from harness.results.config import LatencyTargets, ScenarioSettings
from harness.results.schema import (
    CaseKey,
    ScenarioKind,
    ScenarioPoint,
    ScenarioResult,
)
from harness.run.case import CaseSpec
from harness.run.execute import LOCAL, prime_process
from harness.run.pipeline import build_case
from harness.scenarios.engine import Timings, one_at_a_time, serve_items, serve_tokens
from harness.scenarios.requests import Lengths, draw_lengths, poisson_arrivals, resolved
from harness.scenarios.search import search_max_rate
from harness.scenarios.summary import TARGET_METRICS, judge, merge, point
from workloads.base import CaseUnsupported, Instance
from workloads.serving import Server, TokenServer

MAX_ROUNDS = 3
"""Runs pooled at one server rate at most, while the target lies inside a p99's CI."""
MAX_REQUESTS_FACTOR = 20
"""A server point issues at most this many times `requests` (the rate x duration rule)."""
WARMUP_SINGLE = 3
"""Single requests served, and discarded, before anything is measured."""


class ScenarioSpec(BaseModel):
    """Everything a worker needs to run the scenarios of one workload/dtype/max batch."""

    backend: str
    key: CaseKey
    params: dict[str, Any] = Field(default_factory=dict)
    seed: int = 0
    settings: ScenarioSettings
    """Filled for the preset (no None left)."""


def targets_for(kind: str, targets: LatencyTargets) -> dict[str, float]:
    """The p99 bounds (seconds) by metric that a request kind is held to."""
    bounds = {"ttft": targets.ttft_s, "tpot": targets.tpot_s, "latency": targets.latency_s}
    return {metric: bounds[metric] for metric in TARGET_METRICS[kind]}


class ScenarioSession:
    """The scenarios on one built server: lengths, schedules and the serving loops."""

    def __init__(
        self, spec: ScenarioSpec, server: Server, backend: Backend, started: float
    ) -> None:
        settings = spec.settings
        if (
            settings.targets is None
            or settings.requests is None
            or settings.max_wait_s is None
            or settings.min_duration_s is None
            or settings.time_budget_s is None
        ):
            raise ValueError("ScenarioSpec.settings must be filled for the preset")
        self.spec = spec
        self.settings = settings
        self.server = server
        self.sync = backend.synchronize
        self.max_batch = spec.key.batch
        self.targets = targets_for(server.kind, settings.targets)
        self.requests = settings.requests
        self.max_wait_s = settings.max_wait_s
        self.min_duration_s = settings.min_duration_s
        self.time_budget_s = settings.time_budget_s
        self.started = started

    def lengths(self, count: int, stream: int) -> Lengths | None:
        if not isinstance(self.server, TokenServer):
            return None
        return draw_lengths(
            self.settings.lengths, self.server.max_len, count, self.spec.seed, stream
        )

    def serve(self, arrivals: list[float], lengths: Lengths | None, max_batch: int) -> Timings:
        """Serve requests arriving at `arrivals` with at most `max_batch` per batch."""
        if isinstance(self.server, TokenServer):
            if lengths is None:
                raise ValueError("LLM requests need lengths")
            return serve_tokens(
                self.server,
                self.sync,
                arrivals,
                lengths.input_len,
                lengths.output_len,
                max_batch,
            )
        return serve_items(self.server, self.sync, arrivals, max_batch, self.max_wait_s)

    def _point(
        self, scenario: ScenarioKind, timings: Timings, lengths: Lengths | None, **kw: Any
    ) -> ScenarioPoint:
        if lengths is None:
            return point(scenario, timings, **kw)
        return point(scenario, timings, lengths.input_len, lengths.output_len, **kw)

    def single_stream(self, count: int, stream: int = 0) -> ScenarioPoint:
        """One request at a time: each issued when the previous one completed."""
        lengths = self.lengths(count, stream)

        def one(request: int) -> Timings:
            own = None
            if lengths is not None:
                own = Lengths(
                    input_len=[lengths.input_len[request]],
                    output_len=[lengths.output_len[request]],
                )
            return self.serve([0.0], own, 1)

        return self._point("single-stream", one_at_a_time(one, count), lengths)

    def offline(self, count: int, stream: int = 0) -> ScenarioPoint:
        """Every request available at the start, served in batches of up to max batch."""
        lengths = self.lengths(count, stream)
        timings = self.serve([0.0] * count, lengths, self.max_batch)
        return self._point("offline", timings, lengths)

    def requests_at(self, rate: float) -> int:
        """Requests of one run expected to go at `rate`: at least `requests`, and at least
        rate x min_duration_s (a run long enough to see the queue's steady state and the
        machine's interruptions), at most MAX_REQUESTS_FACTOR x `requests`."""
        wanted = math.ceil(rate * self.min_duration_s)
        return min(max(self.requests, wanted), MAX_REQUESTS_FACTOR * self.requests)

    def arrivals(self, rate: float, count: int, stream: int) -> list[float]:
        """The seeded arrival schedule of one server run (Poisson)."""
        return poisson_arrivals(rate, count, self.spec.seed, stream)

    def server_at(self, rate: float) -> ScenarioPoint:
        """The server scenario at `rate`, judged against the targets; repeated (and pooled,
        up to MAX_ROUNDS runs, each with its own seeded schedule) while a target lies inside
        its p99's 95% CI and the time budget lasts."""
        count = self.requests_at(rate)
        runs: list[ScenarioPoint] = []
        judged: ScenarioPoint | None = None
        for stream in range(MAX_ROUNDS):
            lengths = self.lengths(count, stream)
            arrivals = self.arrivals(rate, count, stream)
            timings = self.serve(arrivals, lengths, self.max_batch)
            runs.append(self._point("server", timings, lengths, target_rate=rate))
            judged = judge(merge(runs), self.targets)
            over_budget = time.perf_counter() - self.started > self.time_budget_s
            if judged.decided or over_budget:
                break
        assert judged is not None
        return judged


def execute_scenario(spec: ScenarioSpec) -> ScenarioResult:
    """Run the scenarios of `spec` here. Never raises for a failure of the case itself:
    exceptions, out-of-memory, NaN/Inf outputs and unsupported settings become failed results."""
    t0 = time.perf_counter()
    return never_raises(lambda: _run(spec, t0), lambda kind, msg: failed(spec, kind, msg))


def failed(spec: ScenarioSpec, error: str, message: str, **extra: Any) -> ScenarioResult:
    """A ScenarioResult for scenarios that produced no (usable) measurement; `error` is the
    ErrorKind (crash, timeout, oom, nonfinite, ...)."""
    return failed_result(ScenarioResult, spec.key, error, message, seed=spec.seed, **extra)


def _build(spec: ScenarioSpec, backend: Backend) -> tuple[Instance, Server]:
    """The case built by the case pipeline (untimed: requests are served instead), and its
    server."""
    case = CaseSpec(backend=spec.backend, key=spec.key, params=spec.params, seed=spec.seed)
    instance = build_case(case, backend, LOCAL, timed=False).instance
    server = instance.server(spec.key.batch)
    if server is None:
        raise CaseUnsupported(
            f"workload '{spec.key.workload}' does not serve requests (no Instance.server)"
        )
    return instance, server


def _run(spec: ScenarioSpec, t0: float) -> ScenarioResult:
    prime_process(spec.backend)
    backend = get_backend(spec.backend)
    instance, server = _build(spec, backend)
    session = ScenarioSession(spec, server, backend, t0)
    settings = spec.settings
    wanted = set(settings.scenarios)
    search = "server" in wanted and not settings.rates
    # Warm-up (discarded): first calls pay for kernels, allocations and thread pools. Its
    # rates size the measured runs: at least `requests`, and long enough (min_duration_s).
    single_rate = session.single_stream(WARMUP_SINGLE, stream=99).achieved_rate
    offline_rate = session.offline(2 * spec.key.batch, stream=98).achieved_rate
    reason = instance.nonfinite_reason()
    if reason is not None:  # a broken output is not worth measuring
        return failed(spec, "nonfinite", reason, kind=server.kind)
    extra: dict[str, Any] = {}
    if "single-stream" in wanted or search:
        extra["single_stream"] = session.single_stream(session.requests_at(single_rate))
    if "offline" in wanted or search:
        extra["offline"] = session.offline(session.requests_at(offline_rate))
    if settings.rates and "server" in wanted:
        extra["server"] = [session.server_at(rate) for rate in settings.rates]
    elif search:
        outcome = search_max_rate(
            session.server_at,
            extra["single_stream"].achieved_rate,
            extra["offline"].achieved_rate,
            settings.search_steps or 1,
            session.time_budget_s,
        )
        extra.update(
            server=outcome.points,
            max_rate=outcome.max_rate,
            missed_rate=outcome.missed_rate,
            search_note=outcome.note,
        )
    lengths: dict[str, Any] = {}
    if isinstance(server, TokenServer):
        lengths = resolved(settings.lengths, server.max_len).model_dump()
    common = {
        "kind": server.kind,
        "lengths": lengths,
        "targets": session.targets,
        "max_wait_s": settings.max_wait_s if server.kind == "items" else None,
        **extra,
    }
    reason = instance.nonfinite_reason()
    if reason is not None:
        return failed(spec, "nonfinite", reason, **common)
    return ScenarioResult(key=spec.key, status="ok", seed=spec.seed, **common)


def scenario_job(payload: str) -> str:
    """The isolation job of one scenario case: a ScenarioSpec as JSON in, its ScenarioResult
    as JSON out."""
    return execute_scenario(ScenarioSpec.model_validate_json(payload)).model_dump_json()
