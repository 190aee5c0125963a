"""The scenarios against OpenAI-compatible serving endpoints: the same schedules, lengths,
rate search, targets, percentiles and storage as the in-process scenarios
(`ScenarioSession`), with an HTTP server behind them instead of the in-process engine.

One event loop (in this process: no device work here) runs the streaming client
(`harness.scenarios.client`). Before anything runs, every endpoint is probed (nothing
listening: BenchError, exit 2); a null local endpoint calibrates the client's own limit.
Then per endpoint: warm-up, single-stream, offline, the server points (fixed rates or the
max-rate search), the closed-loop concurrency sweep and the audits. Every point is saved to
the results file as soon as it is measured, so an interrupt keeps it. A failed request is a
result (its reason counted), never an exception."""

from __future__ import annotations

import asyncio
import math
import signal
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np

from harness.errors import BenchError, failure
from harness.results.config import RunConfig, ScenarioSettings
from harness.results.endpoint import (
    Audits,
    Calibration,
    EndpointInfo,
    EndpointPoint,
    EndpointSettings,
    RepeatAudit,
    RequestOutcome,
)
from harness.results.schema import (
    CaseError,
    CaseKey,
    RunRecord,
    ScenarioKind,
    ScenarioPoint,
    ScenarioResult,
)
from harness.results.store import save_run
from harness.run.session import RunInterrupted, RunOutcome, finish, open_run
from harness.scenarios.audits import accuracy_audit, repeat_audit, token_audit
from harness.scenarios.client import Streamed, Target, failure_reason, probe, stream_request
from harness.scenarios.engine import Timings, one_at_a_time
from harness.scenarios.job import ScenarioSession, ScenarioSpec, targets_for
from harness.scenarios.nullserver import start_null_server
from harness.scenarios.prompts import Dataset, PromptedLengths, load_dataset, with_prompts
from harness.scenarios.requests import Lengths, draw_lengths, gamma_arrivals, resolved
from harness.scenarios.search import search_max_rate
from harness.scenarios.summary import point

MAX_ERROR_RATE = 0.01
"""A server point with more failed requests than this fraction misses the targets (a p99
cannot be met when over 1% of requests never finish)."""
CLIENT_MARGIN = 2.0
"""A point within this factor of the client's own limit is flagged as client-limited."""
DEFAULT_MAX_BATCH = 8
"""Requests in flight at once in offline, unless --max-batch."""
WARMUP = 4
"""Warm-up requests (x the measured concurrency, at most WARMUP_MAX) before each point."""
WARMUP_MAX = 32
CALIBRATION_REQUESTS = 200
CALIBRATION_CONCURRENCY = 32
CALIBRATION_TOKENS = 16
ACCURACY_SAMPLE = 8
REPEATS = 12

PointFn = Callable[[], None]


class EndpointSession(ScenarioSession):
    """ScenarioSession with an endpoint as the server: `serve` streams HTTP requests."""

    def __init__(
        self,
        spec: ScenarioSpec,
        target: Target,
        loop: asyncio.AbstractEventLoop,
        http: aiohttp.ClientSession,
        calibration: Calibration | None,
        dataset: Dataset | None,
        started: float,
    ) -> None:
        settings = spec.settings
        endpoint = settings.endpoint
        if endpoint is None or settings.targets is None:
            raise ValueError("an EndpointSession needs filled settings with an endpoint")
        assert settings.requests and settings.min_duration_s and settings.time_budget_s
        self.spec = spec
        self.settings = settings
        self.endpoint: EndpointSettings = endpoint
        self.max_batch = spec.key.batch
        self.targets = targets_for("tokens", settings.targets)
        self.requests = settings.requests
        self.max_wait_s = 0.0
        self.min_duration_s = settings.min_duration_s
        self.time_budget_s = settings.time_budget_s
        self.started = started
        self.target = target
        self.loop = loop
        self.http = http
        self.calibration = calibration
        self.dataset = dataset
        self.pending: list[Streamed] = []
        self.measured: list[ScenarioPoint] = []
        """Every point measured (pooled runs included): for the token audit."""
        self.accuracy_sample: list[tuple[str, int, list[str]]] = []

    # -- what is sent ---------------------------------------------------------------------
    def lengths(self, count: int, stream: int) -> PromptedLengths:
        settings, seed = self.settings, self.spec.seed
        default_out = resolved(settings.lengths, self.endpoint.seq_len).output_len
        if self.dataset is not None:
            drawn = self.dataset.draw(count, seed, stream, default_out)
            if settings.lengths.output_len:  # --output-len overrides the file's lengths
                drawn.output_len = [settings.lengths.output_len] * count
            return drawn
        plain = draw_lengths(settings.lengths, self.endpoint.seq_len, count, seed, stream)
        return with_prompts(plain, seed, stream)

    def arrivals(self, rate: float, count: int, stream: int) -> list[float]:
        return gamma_arrivals(rate, count, self.spec.seed, stream, self.endpoint.burstiness)

    # -- how it is sent -------------------------------------------------------------------
    def serve(self, arrivals: list[float], lengths: Lengths | None, max_batch: int) -> Timings:
        """Send request i at arrivals[i] (seconds from now), at most `max_batch` in flight;
        every stream is kept in `pending` for `_point`."""
        if not isinstance(lengths, PromptedLengths):
            raise ValueError("endpoint requests need prompts")
        streams, t0 = self.loop.run_until_complete(self._open_loop(arrivals, lengths, max_batch))
        self.pending += streams
        return _timings(arrivals, streams, t0)

    async def _open_loop(
        self, arrivals: list[float], lengths: PromptedLengths, limit: int
    ) -> tuple[list[Streamed], float]:
        slots = asyncio.Semaphore(limit)
        t0 = time.perf_counter()

        async def one(i: int) -> Streamed:
            delay = arrivals[i] - (time.perf_counter() - t0)
            if delay > 0:
                await asyncio.sleep(delay)
            async with slots:
                streamed = await stream_request(
                    self.http, self.target, lengths.prompts[i], lengths.output_len[i]
                )
            streamed.outcome.send_lag_s = max(0.0, streamed.sent - t0 - arrivals[i])
            return streamed

        streams = await asyncio.gather(*(one(i) for i in range(len(arrivals))))
        return list(streams), t0

    async def _closed_loop(
        self, lengths: PromptedLengths, concurrency: int
    ) -> tuple[list[Streamed], list[float], float]:
        """`concurrency` users, each sending its next request when its last one ended."""
        count = len(lengths.prompts)
        issued: list[float] = [0.0] * count
        streams: list[Streamed | None] = [None] * count
        cursor = iter(range(count))
        t0 = time.perf_counter()

        async def user() -> None:
            for i in cursor:
                issued[i] = time.perf_counter() - t0
                streams[i] = await stream_request(
                    self.http, self.target, lengths.prompts[i], lengths.output_len[i]
                )

        await asyncio.gather(*(user() for _ in range(concurrency)))
        return [s for s in streams if s is not None], issued, t0

    def warm(self, concurrency: int, stream: int) -> None:
        """Warm-up at `concurrency` (discarded): connections, server caches, graphs."""
        count = min(WARMUP_MAX, WARMUP * concurrency)
        lengths = self.lengths(count, stream)
        self.loop.run_until_complete(self._closed_loop(lengths, concurrency))

    # -- what is stored -------------------------------------------------------------------
    def _point(
        self, scenario: ScenarioKind, timings: Timings, lengths: Lengths | None, **kw: Any
    ) -> ScenarioPoint:
        streams, self.pending = self.pending, []
        if lengths is None or len(streams) != len(timings.arrival_s):
            raise ValueError("one stream per timed request expected")
        result = self.summarize(scenario, timings, streams, lengths, **kw)
        self.measured.append(result)
        if scenario == "offline" and isinstance(lengths, PromptedLengths):
            # The accuracy audit's sample: the last offline run's first outputs.
            self.accuracy_sample = [
                (lengths.prompts[i], lengths.output_len[i], s.pieces)
                for i, s in enumerate(streams)
                if s.outcome.ok
            ][:ACCURACY_SAMPLE]
        return result

    def summarize(
        self,
        scenario: ScenarioKind,
        timings: Timings,
        streams: list[Streamed],
        lengths: Lengths,
        concurrency: int | None = None,
        **kw: Any,
    ) -> ScenarioPoint:
        """The ScenarioPoint of one run: percentiles over the requests that succeeded (with
        the lengths the server reported), the endpoint extras over all issued."""
        ok = [i for i, s in enumerate(streams) if s.outcome.ok]
        outcomes = [s.outcome for s in streams]
        if ok:
            sub = Timings(
                arrival_s=[timings.arrival_s[i] for i in ok],
                first_s=[timings.first_s[i] for i in ok],
                done_s=[timings.done_s[i] for i in ok],
                duration_s=timings.duration_s,
            )
            inputs = [outcomes[i].prompt_tokens or lengths.input_len[i] for i in ok]
            outputs = [outcomes[i].produced for i in ok]
            result = point(scenario, sub, inputs, outputs, **kw)
        else:
            result = ScenarioPoint(
                scenario=scenario,
                requests=0,
                duration_s=timings.duration_s,
                achieved_rate=0.0,
                tokens_per_s=0.0,
                arrival_s=[],
                latency_s=[],
                **kw,
            )
        extras = self.endpoint_point(result, outcomes, concurrency)
        return result.model_copy(update={"endpoint": extras})

    def endpoint_point(
        self, result: ScenarioPoint, outcomes: list[RequestOutcome], concurrency: int | None
    ) -> EndpointPoint:
        """Failures, goodput against every per-request SLO, interactivity, cost, and whether
        the client's own limit is near."""
        slos = dict(self.targets)
        if self.endpoint.e2e_s is not None:
            slos["latency"] = self.endpoint.e2e_s
        meeting = 0
        for ttft, tpot, latency in zip(result.ttft_s, result.tpot_s, result.latency_s, strict=True):
            fine = ttft <= slos.get("ttft", math.inf) and latency <= slos.get("latency", math.inf)
            if tpot is not None:
                fine = fine and tpot <= slos.get("tpot", math.inf)
            meeting += fine
        issued = len(outcomes)
        errors = Counter(o.reason for o in outcomes if not o.ok)
        failed = sum(errors.values())
        tpots = [t for t in result.tpot_s if t is not None]
        tokens = result.tokens_per_s or 0.0
        price = self.endpoint.price_per_hour
        limited = False
        if self.calibration is not None:
            limited = (
                result.achieved_rate * CLIENT_MARGIN > self.calibration.requests_per_s
                or tokens * CLIENT_MARGIN > self.calibration.tokens_per_s
            )
        return EndpointPoint(
            issued=issued,
            failed=failed,
            errors=dict(errors),
            error_rate=failed / issued if issued else 0.0,
            outcomes=outcomes,
            slo_fraction=meeting / issued if issued else 0.0,
            goodput=meeting / result.duration_s if result.duration_s > 0 else 0.0,
            concurrency=concurrency,
            burstiness=self.endpoint.burstiness,
            interactivity=1.0 / float(np.median(tpots)) if tpots else None,
            tokens_per_s_per_device=tokens / self.endpoint.devices,
            usd_per_million_tokens=usd_per_million(price, tokens),
            client_limited=limited,
        )

    # -- the scenarios --------------------------------------------------------------------
    def single_stream(self, count: int, stream: int = 0) -> ScenarioPoint:
        """One request at a time, each sent when the previous one ended."""
        lengths = self.lengths(count, stream)

        def one(i: int) -> Timings:
            own = PromptedLengths(
                input_len=[lengths.input_len[i]],
                output_len=[lengths.output_len[i]],
                prompts=[lengths.prompts[i]],
            )
            return self.serve([0.0], own, 1)

        return self._point("single-stream", one_at_a_time(one, count), lengths)

    def server_at(self, rate: float) -> ScenarioPoint:
        """The server scenario at `rate` (after a warm-up at the same rate), pooled as
        in-process; a point with more than MAX_ERROR_RATE failed requests misses."""
        self.loop.run_until_complete(self._warm_open(rate))
        first = len(self.measured)
        judged = super().server_at(rate)
        runs = self.measured[first:]
        extras = [r.endpoint for r in runs if r.endpoint is not None]
        outcomes = [o for e in extras for o in e.outcomes]
        merged = self.endpoint_point(judged, outcomes, None)
        meets = bool(judged.meets_target) and merged.error_rate <= MAX_ERROR_RATE
        return judged.model_copy(update={"endpoint": merged, "meets_target": meets})

    async def _warm_open(self, rate: float) -> None:
        count = min(WARMUP_MAX, max(WARMUP, math.ceil(rate * 0.2)))
        lengths = self.lengths(count, 97)
        arrivals = self.arrivals(rate, count, 97)
        await self._open_loop(arrivals, lengths, self.endpoint.max_in_flight)

    def at_concurrency(self, concurrency: int, stream: int) -> ScenarioPoint:
        """A closed-loop point: `concurrency` users, at least `requests` requests in all."""
        self.warm(concurrency, 96)
        count = max(self.requests, 2 * concurrency)
        lengths = self.lengths(count, stream)
        streams, issued, t0 = self.loop.run_until_complete(self._closed_loop(lengths, concurrency))
        timings = _timings(issued, streams, t0)
        result = self.summarize("concurrency", timings, streams, lengths, concurrency)
        self.measured.append(result)
        return result

    # -- audits ---------------------------------------------------------------------------
    def audit(self) -> Audits:
        """The three audits (docs/scenarios.md): accuracy on the offline run's first outputs,
        token accounting over every measured request, repeated vs unique prompts."""
        outcomes = [o for p in self.measured if p.endpoint for o in p.endpoint.outcomes]
        audits = Audits(tokens=token_audit(outcomes))
        alone = [
            self.loop.run_until_complete(stream_request(self.http, self.target, prompt, length))
            for prompt, length, _ in self.accuracy_sample
        ]
        pairs = [
            (pieces, a.pieces)
            for (_, _, pieces), a in zip(self.accuracy_sample, alone, strict=True)
            if a.outcome.ok
        ]
        if pairs:
            audits.accuracy = accuracy_audit([p[0] for p in pairs], [p[1] for p in pairs])
        audits.repeated = self.repeat_audit()
        return audits

    def repeat_audit(self) -> RepeatAudit | None:
        """One prompt REPEATS times against unique prompts of its lengths, one at a time."""
        unique = self.lengths(REPEATS, 94)
        same = PromptedLengths(
            input_len=[unique.input_len[0]] * REPEATS,
            output_len=[unique.output_len[0]] * REPEATS,
            prompts=[unique.prompts[0]] * REPEATS,
        )
        unique = PromptedLengths(
            input_len=same.input_len,
            output_len=same.output_len,
            prompts=[p for p in self.lengths(REPEATS, 93).prompts],
        )
        runs = []
        for lengths in (same, unique):
            streams = [
                self.loop.run_until_complete(stream_request(self.http, self.target, p, n))
                for p, n in zip(lengths.prompts, lengths.output_len, strict=True)
            ]
            ok = [s for s in streams if s.outcome.ok and s.first is not None]
            runs.append(ok)
        same_ok, unique_ok = runs
        if len(same_ok) < 2 or len(unique_ok) < 2:
            return None
        return repeat_audit(
            [s.first - s.sent for s in same_ok[1:] if s.first],  # the first one fills a cache
            [s.first - s.sent for s in unique_ok[1:] if s.first],
            [s.done - s.sent for s in same_ok[1:]],
            [s.done - s.sent for s in unique_ok[1:]],
        )


def _timings(arrivals: list[float], streams: list[Streamed], t0: float) -> Timings:
    """Times relative to t0; a request without content is stamped at its end."""
    done = [s.done - t0 for s in streams]
    first = [(s.first if s.first is not None else s.done) - t0 for s in streams]
    return Timings(
        arrival_s=list(arrivals),
        first_s=first,
        done_s=done,
        duration_s=max(done) if done else 0.0,
    )


def usd_per_million(price_per_hour: float | None, tokens_per_s: float | None) -> float | None:
    """$ per million output tokens: price per hour / (tokens per s x 3600) x 1e6."""
    if price_per_hour is None or not tokens_per_s:
        return None
    return price_per_hour / (tokens_per_s * 3600.0) * 1e6


# -- the run ---------------------------------------------------------------------------------
def endpoint_key(
    label: str, url: str, settings: EndpointSettings, batch: int, preset: str
) -> CaseKey:
    """The case key of one endpoint: the label is its `workload` in tables and reports. The
    URL is left out (stored in EndpointInfo): the same label, model and API compare across
    runs wherever the server listened."""
    return CaseKey(
        workload=label,
        workload_version="endpoint",
        mode="serve",
        dtype="served",
        batch=batch,
        preset=preset,
        params={"model": settings.model, "api": settings.api},
    )


async def _probe_all(settings: EndpointSettings) -> list[tuple[str, bool]]:
    """(server name, extras accepted) per URL; BenchError naming the first URL nothing
    answers at."""
    found = []
    timeout = aiohttp.ClientTimeout(total=min(30.0, settings.request_timeout_s))
    async with aiohttp.ClientSession(timeout=timeout) as http:
        for url in settings.urls:
            target = Target(url=url, model=settings.model, api=settings.api, timeout_s=10.0)
            try:
                name = await probe(http, target)
            except (aiohttp.ClientConnectorError, aiohttp.InvalidURL, OSError) as exc:
                reason = failure_reason(exc) if isinstance(exc, aiohttp.ClientError) else str(exc)
                raise BenchError(f"cannot reach the endpoint {url}: {reason}.") from None
            except (aiohttp.ClientError, asyncio.TimeoutError):
                name = ""  # it answers, but not /models: the run will say more
            tried = await stream_request(http, target, "Hello", 2)
            rejected = not tried.outcome.ok and tried.outcome.reason.startswith("http 4")
            found.append((name, not rejected))
    return found


async def calibrate(http: aiohttp.ClientSession) -> Calibration:
    """The client's own limit against the null endpoint: request rate and token rate at
    CALIBRATION_CONCURRENCY, per-request overhead at concurrency 1 (bounded in count)."""
    runner, url = await start_null_server()
    try:
        target = Target(url=url, model="null", timeout_s=10.0)
        for _ in range(10):  # warm-up: connections, parsers
            await stream_request(http, target, "x", CALIBRATION_TOKENS)
        alone = []
        for _ in range(50):
            s = await stream_request(http, target, "x", CALIBRATION_TOKENS)
            alone.append(s.done - s.sent)
        left = iter(range(CALIBRATION_REQUESTS))
        produced = 0

        async def user() -> None:
            nonlocal produced
            for _ in left:
                s = await stream_request(http, target, "x", CALIBRATION_TOKENS)
                produced += s.outcome.produced

        started = time.perf_counter()
        await asyncio.gather(*(user() for _ in range(CALIBRATION_CONCURRENCY)))
        elapsed = time.perf_counter() - started
    finally:
        await runner.cleanup()
    return Calibration(
        requests_per_s=CALIBRATION_REQUESTS / elapsed,
        tokens_per_s=produced / elapsed,
        overhead_s=float(np.median(alone)),
        concurrency=CALIBRATION_CONCURRENCY,
        requests=CALIBRATION_REQUESTS,
        tokens_per_request=CALIBRATION_TOKENS,
    )


ScenarioSaveFn = Callable[[ScenarioResult], None]


def measure_endpoint(
    session: EndpointSession, info: EndpointInfo, save: ScenarioSaveFn
) -> ScenarioResult:
    """Every scenario of `session` in the in-process order (warm-up sizing, single-stream,
    offline, server points or the search), then the concurrency sweep and the audits.
    `save` gets the result so far after each point."""
    settings, spec = session.settings, session.spec
    result = ScenarioResult(
        key=spec.key,
        status="ok",
        kind="tokens",
        lengths=resolved(settings.lengths, session.endpoint.seq_len).model_dump(),
        targets=session.targets,
        seed=spec.seed,
        endpoint=info,
        started_at=datetime.now(timezone.utc),
    )
    t0 = time.perf_counter()

    def saved(**update: Any) -> None:
        nonlocal result
        result = result.model_copy(update={**update, "duration_s": time.perf_counter() - t0})
        save(result)

    saved()
    wanted = set(settings.scenarios)
    search = "server" in wanted and not settings.rates
    session.warm(1, 99)
    single_rate = session.single_stream(3, stream=99).achieved_rate
    session.warm(session.max_batch, 98)
    offline_rate = session.offline(2 * session.max_batch, stream=98).achieved_rate
    session.measured.clear()  # warm-up sizing runs are not measured
    if "single-stream" in wanted or search:
        saved(single_stream=session.single_stream(session.requests_at(max(single_rate, 1e-3))))
    if "offline" in wanted or search:
        session.warm(session.max_batch, 98)
        saved(offline=session.offline(session.requests_at(max(offline_rate, 1e-3))))
    if settings.rates and "server" in wanted:
        points: list[ScenarioPoint] = []
        for rate in settings.rates:
            points.append(session.server_at(rate))
            saved(server=list(points))
    elif search and not all(p and p.requests for p in (result.single_stream, result.offline)):
        saved(search_note="no server search: single-stream or offline had no successful request")
    elif search:
        single, offline = result.single_stream, result.offline
        assert single is not None and offline is not None
        tried: list[ScenarioPoint] = []

        def measure(rate: float) -> ScenarioPoint:
            measured = session.server_at(rate)
            tried.append(measured)
            saved(server=list(tried))
            return measured

        outcome = search_max_rate(
            measure,
            max(single.achieved_rate, 1e-3),
            max(offline.achieved_rate, 1e-3),
            settings.search_steps or 1,
            session.time_budget_s,
        )
        note = outcome.note
        best = next((p for p in outcome.points if p.target_rate == outcome.max_rate), None)
        if best is not None and best.endpoint is not None and best.endpoint.client_limited:
            note += "; the max rate is within 2x of the client's own limit: the client's figure"
        info.usd_per_million_at_max_rate = (
            best.endpoint.usd_per_million_tokens if best and best.endpoint else None
        )
        saved(
            server=outcome.points,
            max_rate=outcome.max_rate,
            missed_rate=outcome.missed_rate,
            search_note=note,
            endpoint=info,
        )
    sweep: list[ScenarioPoint] = []
    for stream, concurrency in enumerate(session.endpoint.concurrency):
        sweep.append(session.at_concurrency(concurrency, stream))
        saved(concurrency=list(sweep))
    if session.endpoint.audits:
        info.audits = session.audit()
        saved(endpoint=info)
    return result


def plan_endpoints(config: RunConfig) -> list[ScenarioSpec]:
    """One ScenarioSpec per endpoint URL (its label the key's workload)."""
    settings = (config.scenario or ScenarioSettings()).for_preset(config.preset)
    endpoint = settings.endpoint
    if endpoint is None:
        raise BenchError("no --endpoint given.")
    batch = settings.max_batch or DEFAULT_MAX_BATCH
    specs = []
    for i, url in enumerate(endpoint.urls):
        label = endpoint.labels[i] if i < len(endpoint.labels) else endpoint.model
        specs.append(
            ScenarioSpec(
                backend=config.backend,
                key=endpoint_key(label, url, endpoint, batch, config.preset),
                seed=config.seed,
                settings=settings,
            )
        )
    return specs


EndpointProgressFn = Callable[[int, int, ScenarioSpec, ScenarioResult | None], None]


def run_endpoints(
    config: RunConfig, command: list[str] | None = None, progress: EndpointProgressFn | None = None
) -> RunOutcome:
    """`bench run --scenario ... --endpoint URL`: probe, calibrate, measure each endpoint and
    write the results file after every point. Raises BenchError before anything runs when an
    endpoint cannot be reached; RunInterrupted after a signal (the file then keeps every
    point measured, status `incomplete`)."""
    specs = plan_endpoints(config)
    endpoint = specs[0].settings.endpoint
    assert endpoint is not None
    dataset = load_dataset(endpoint.dataset) if endpoint.dataset else None
    loop = asyncio.new_event_loop()
    try:
        probes = loop.run_until_complete(_probe_all(endpoint))
        record, path = open_run(config, command)
        signals = _install_signals(loop)
        try:
            _measure_all(specs, probes, dataset, record, path, loop, progress)
        except asyncio.CancelledError:
            if not signals:
                raise
            finish(record, path, "incomplete")
            raise RunInterrupted(signals[0]) from None
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)
        return finish(record, path, "complete")
    finally:
        _close(loop)


def _install_signals(loop: asyncio.AbstractEventLoop) -> list[int]:
    """SIGINT/SIGTERM cancel every task of `loop` (the request in flight ends at once); the
    returned list gets the signal's number. A signal raised as an exception from the handler
    could land inside an asyncio callback, which the loop would log and swallow."""
    received: list[int] = []

    def on_signal(signum: int) -> None:
        received.append(signum)
        for task in asyncio.all_tasks(loop):
            task.cancel()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal, signum)
    return received


def _measure_all(
    specs: list[ScenarioSpec],
    probes: list[tuple[str, bool]],
    dataset: Dataset | None,
    record: RunRecord,
    path: Path,
    loop: asyncio.AbstractEventLoop,
    progress: EndpointProgressFn | None,
) -> None:
    endpoint = specs[0].settings.endpoint
    assert endpoint is not None
    http = loop.run_until_complete(_client(endpoint))
    try:
        calibration = loop.run_until_complete(calibrate(http))
        for index, (spec, (server, extras)) in enumerate(zip(specs, probes, strict=True)):
            if progress:
                progress(index, len(specs), spec, None)
            url = endpoint.urls[index]
            target = Target(
                url=url,
                model=endpoint.model,
                api=endpoint.api,
                extras=extras,
                timeout_s=endpoint.request_timeout_s,
            )
            info = EndpointInfo(
                url=url,
                label=spec.key.workload,
                model=endpoint.model,
                api=endpoint.api,
                server=server,
                extras_accepted=extras,
                dataset=dataset.path if dataset else None,
                dataset_sha256=dataset.sha256 if dataset else None,
                calibration=calibration,
                price_per_hour=endpoint.price_per_hour,
                client_note=(
                    f"client limit {calibration.requests_per_s:.4g} req/s, "
                    f"{calibration.tokens_per_s:.4g} tokens/s (null endpoint)"
                ),
            )
            session = EndpointSession(
                spec, target, loop, http, calibration, dataset, time.perf_counter()
            )
            slot = len(record.scenarios)
            record.scenarios.append(ScenarioResult(key=spec.key, status="ok", endpoint=info))

            def save(result: ScenarioResult, slot: int = slot) -> None:
                record.scenarios[slot] = result
                save_run(record, path)

            try:
                result = measure_endpoint(session, info, save)
            except Exception as exc:  # a bug or a surprise: this endpoint's failure, kept
                kind, message = failure(exc)
                result = record.scenarios[slot].model_copy(
                    update={"status": "failed", "error": CaseError(kind=kind, message=message)}  # type: ignore[arg-type]
                )
                save(result)
            if progress:
                progress(index, len(specs), spec, result)
    finally:
        loop.run_until_complete(http.close())


async def _client(settings: EndpointSettings) -> aiohttp.ClientSession:
    """One client session for the run: no connection limit beyond max in flight."""
    connector = aiohttp.TCPConnector(limit=settings.max_in_flight + WARMUP_MAX)
    return aiohttp.ClientSession(connector=connector)


def _close(loop: asyncio.AbstractEventLoop) -> None:
    for task in asyncio.all_tasks(loop):
        task.cancel()
    try:
        loop.run_until_complete(loop.shutdown_asyncgens())
    finally:
        loop.close()
