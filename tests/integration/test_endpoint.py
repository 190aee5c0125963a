"""The scenarios against an OpenAI-compatible endpoint: the test server of
tests/fixtures/openai_server.py on 127.0.0.1, its switches for the ways real servers differ
and fail. Decisions rest on configured delays, counts and reasons, never on machine speed
(the delays are sleeps of the server)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from harness.analysis.scenario_compare import compare_scenarios
from harness.report.build import write_report
from harness.results.config import LatencyTargets, LengthSpec, RunConfig, ScenarioSettings
from harness.results.endpoint import EndpointSettings
from harness.results.schema import ScenarioResult
from harness.results.store import load_run
from harness.scenarios.endpoint import run_endpoints
from harness.scenarios.requests import poisson_arrivals
from tests.conftest import invoke_bench
from tests.fixtures.openai_server import Behaviour, OpenAIServer

ServerFactory = Callable[..., OpenAIServer]


@pytest.fixture
def openai_server() -> Iterator[ServerFactory]:
    """Start test servers with the given Behaviour switches; all stopped after the test."""
    started: list[OpenAIServer] = []

    def start(**switches: object) -> OpenAIServer:
        server = OpenAIServer(Behaviour.model_validate(switches)).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def endpoint_run(
    tmp_path: Path, url: str, *, audits: bool = False, **settings: object
) -> ScenarioResult:
    """One endpoint through run_endpoints at the tiny preset; its stored ScenarioResult."""
    options = {"urls": [url], "model": "tiny", "audits": audits}
    forwarded = (
        "concurrency",
        "api",
        "request_timeout_s",
        "price_per_hour",
        "burstiness",
        "devices",
    )
    for key in forwarded:
        if key in settings:
            options[key] = settings.pop(key)
    scenario = ScenarioSettings.model_validate(
        {**settings, "endpoint": EndpointSettings.model_validate(options)}
    )
    config = RunConfig(preset="tiny", scenario=scenario, out=tmp_path)
    outcome = run_endpoints(config)
    assert outcome.path is not None
    (result,) = load_run(outcome.path).scenarios  # what was stored, read back
    return result


FIXED = LengthSpec(kind="fixed", input_len=8, output_len=5)


def test_single_stream_ttft_and_tpot_match_the_servers_delays(
    openai_server: ServerFactory, tmp_path: Path
) -> None:
    server = openai_server(ttft_s=0.2, tpot_s=0.08)  # long against a loaded host's jitter
    result = endpoint_run(
        tmp_path, server.url, scenarios=["single-stream"], lengths=FIXED, requests=10
    )
    single = result.single_stream
    assert single is not None and single.endpoint is not None
    assert single.endpoint.failed == 0 and single.output_len == [5] * single.requests
    assert single.percentiles["ttft"].p50 == pytest.approx(0.2, rel=0.1)
    assert single.percentiles["tpot"].p50 == pytest.approx(0.08, rel=0.1)
    outcome = single.endpoint.outcomes[0]
    assert outcome.token_source == "usage" and len(outcome.itl_s) == 4
    assert result.endpoint is not None and result.endpoint.server.startswith("accelbench-test")
    calibration = result.endpoint.calibration
    assert calibration is not None and calibration.requests_per_s > 0
    assert server.bodies[-1]["stream_options"] == {"include_usage": True}
    assert server.bodies[-1]["ignore_eos"] is True and server.bodies[-1]["temperature"] == 0


def predicted_ttfts(
    arrivals: list[float], service_s: float, ttft_s: float, slots: int
) -> list[float]:
    """TTFTs of a FIFO queue with `slots` servers, each request holding one for `service_s`,
    its first token `ttft_s` after it starts: the prediction."""
    free = [0.0] * slots
    ttft = []
    for arrival in arrivals:
        slot = int(np.argmin(free))
        start = max(arrival, free[slot])
        free[slot] = start + service_s
        ttft.append(start - arrival + ttft_s)
    return ttft


def test_the_max_rate_matches_a_queueing_prediction(
    openai_server: ServerFactory, tmp_path: Path
) -> None:
    slots, bound, requests = 2, 0.25, 30
    server = openai_server(ttft_s=0.05, tpot_s=0.02, slots=slots)
    targets = LatencyTargets(ttft_s=bound, tpot_s=1.0, latency_s=1.0)
    result = endpoint_run(
        tmp_path, server.url, lengths=FIXED, requests=requests, targets=targets,
        search_steps=3, min_duration_s=0.5, time_budget_s=120.0,
    )  # fmt: skip
    assert result.status == "ok" and result.max_rate is not None, result.search_note
    single, offline = result.single_stream, result.offline
    assert single is not None and offline is not None
    # The delays as this machine realizes them (sleeps overshoot): the first-token delay
    # from single-stream, a slot's service time from what full slots sustained.
    ttft, service = single.percentiles["ttft"].p50, slots / offline.achieved_rate

    def count_at(rate: float) -> int:
        return min(max(requests, int(np.ceil(rate * 0.5))), 20 * requests)

    # Each measured point against the prediction from its own (pooled) schedules.
    for point in result.server:
        assert point.target_rate is not None
        n = count_at(point.target_rate)
        runs = [point.arrival_s[i : i + n] for i in range(0, len(point.arrival_s), n)]
        predicted = float(
            np.quantile(
                [t for run in runs for t in predicted_ttfts(run, service, ttft, slots)], 0.99
            )
        )
        assert point.percentiles["ttft"].p99 == pytest.approx(predicted, rel=0.25)

    def meets(rate: float) -> bool:
        arrivals = poisson_arrivals(rate, count_at(rate), 0, 0)
        return float(np.quantile(predicted_ttfts(arrivals, service, ttft, slots), 0.99)) <= bound

    low, high = 0.5, slots / service
    for _ in range(40):
        middle = (low + high) / 2
        low, high = (middle, high) if meets(middle) else (low, middle)
    assert result.max_rate == pytest.approx(low, rel=0.25)
    assert result.max_rate <= slots / service * 1.05  # what the slots could at most sustain


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ("http500", "http 500"),
        ("stream_error", "stream error: engine died"),
        ("drop", "connection dropped"),
        ("malformed", "malformed stream"),
        ("hang", "timeout"),
    ],
)
def test_each_fault_is_a_failed_request_with_its_reason(
    openai_server: ServerFactory,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    fault: str,
    reason: str,
) -> None:
    server = openai_server(fault=fault, fault_every=3, tpot_s=0.001)
    proc = invoke_bench(
        capsys, "run", "--preset", "tiny", "--scenario", "single-stream", "--endpoint",
        server.url, "--model", "tiny", "--lengths", "fixed", "--input-len", "8",
        "--output-len", "4", "--requests", "10", "--request-timeout", "0.5", "--no-audit",
        "--out", str(tmp_path),
    )  # fmt: skip
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "request(s) failed" in proc.stdout
    (path,) = tmp_path.glob("*.json")
    record = load_run(path)  # a valid results file
    assert record.status == "complete"
    (result,) = record.scenarios
    single = result.single_stream
    assert single is not None and single.endpoint is not None
    errors = single.endpoint.errors
    assert single.endpoint.failed > 0 and all(r.startswith(reason) for r in errors), errors
    assert single.requests == single.endpoint.issued - single.endpoint.failed
    # a failed request never meets the SLO: at most issued - failed of them do
    meeting = round(single.endpoint.slo_fraction * single.endpoint.issued)
    assert meeting <= single.endpoint.issued - single.endpoint.failed


def test_a_server_failing_every_request_is_a_complete_failed_run(
    openai_server: ServerFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server = openai_server(fault="http500", fault_every=1)
    proc = invoke_bench(
        capsys, "run", "--preset", "tiny", "--scenario", "single-stream,offline,server",
        "--endpoint", server.url, "--model", "tiny", "--requests", "10", "--out", str(tmp_path),
    )  # fmt: skip
    assert proc.returncode == 1, proc.stdout + proc.stderr
    (path,) = tmp_path.glob("*.json")
    record = load_run(path)
    assert record.status == "complete"
    (result,) = record.scenarios
    assert result.single_stream is not None and result.single_stream.requests == 0
    assert result.single_stream.endpoint is not None
    assert set(result.single_stream.endpoint.errors) == {"http 500: overloaded"}
    assert result.max_rate is None and "no server search" in result.search_note


def test_what_real_servers_differ_in_is_handled_and_audited(
    openai_server: ServerFactory, tmp_path: Path
) -> None:
    server = openai_server(
        role_first=True, keepalive=True, done=False, usage=False, early_stop=3, tpot_s=0.001
    )
    result = endpoint_run(
        tmp_path, server.url, api="chat", scenarios=["single-stream"], lengths=FIXED,
        requests=10, audits=True,
    )  # fmt: skip
    single = result.single_stream
    assert single is not None and single.endpoint is not None
    assert single.endpoint.failed == 0
    outcome = single.endpoint.outcomes[0]
    assert outcome.token_source == "chunks" and outcome.produced == 3
    assert outcome.stopped_early and outcome.role_only_first and outcome.no_done
    assert outcome.finish_reason == "stop"
    assert single.output_len == [3] * single.requests  # what was produced, not requested
    assert result.endpoint is not None
    audits = result.endpoint.audits
    assert audits.tokens is not None
    text = " ".join(audits.tokens.violations)
    for named in ("no usage reported", "stopped before the requested length",
                  "without content", "without the [DONE] sentinel"):  # fmt: skip
        assert named in text
    assert audits.accuracy is not None and audits.accuracy.mismatches == 0
    assert audits.repeated is not None


def test_strict_servers_and_several_tokens_per_chunk(
    openai_server: ServerFactory, tmp_path: Path
) -> None:
    server = openai_server(reject_extras=True, tokens_per_chunk=2, tpot_s=0.001)
    result = endpoint_run(
        tmp_path, server.url, scenarios=["single-stream"], lengths=FIXED, requests=10, audits=True
    )
    assert result.endpoint is not None and not result.endpoint.extras_accepted
    single = result.single_stream
    assert single is not None and single.endpoint is not None and single.endpoint.failed == 0
    assert single.output_len == [5] * single.requests  # from usage, not the 3 chunks
    tokens = result.endpoint.audits.tokens
    assert tokens is not None and tokens.chunks_differ_from_usage == tokens.requests


def test_batch_dependent_outputs_and_prompt_caching_are_caught(
    openai_server: ServerFactory, tmp_path: Path
) -> None:
    server = openai_server(diverge_when_busy=True, cache_prompts=True, ttft_s=0.05, slots=8)
    result = endpoint_run(
        tmp_path, server.url, scenarios=["offline"], lengths=FIXED, requests=10, audits=True
    )
    assert result.endpoint is not None
    accuracy = result.endpoint.audits.accuracy
    assert accuracy is not None and accuracy.mismatches > 0
    assert set(accuracy.first_difference) - {None} == {4}  # the last of 5 tokens
    repeated = result.endpoint.audits.repeated
    assert repeated is not None and repeated.cached and repeated.ttft_ratio < 0.5


def test_concurrency_sweep_goodput_and_cost(openai_server: ServerFactory, tmp_path: Path) -> None:
    server = openai_server(ttft_s=0.01, tpot_s=0.005, slots=2)
    result = endpoint_run(
        tmp_path, server.url, scenarios=["single-stream"], lengths=FIXED, requests=10,
        concurrency=[1, 4], price_per_hour=2.0, burstiness=0.5, devices=2,
    )  # fmt: skip
    one, four = result.concurrency
    assert one.scenario == four.scenario == "concurrency"
    assert one.endpoint is not None and four.endpoint is not None
    assert [one.endpoint.concurrency, four.endpoint.concurrency] == [1, 4]
    assert one.endpoint.burstiness == 0.5
    # Two slots: four users queue, so each user gets fewer tokens/s than one user alone.
    assert four.percentiles["ttft"].p50 > one.percentiles["ttft"].p50
    for p in (one, four):
        e = p.endpoint
        assert e is not None and e.usd_per_million_tokens is not None and p.tokens_per_s
        assert e.tokens_per_s_per_device == pytest.approx(p.tokens_per_s / 2)
        assert e.usd_per_million_tokens == pytest.approx(2.0 / (p.tokens_per_s * 3600) * 1e6)
        assert 0 <= e.slo_fraction <= 1 and e.goodput == pytest.approx(
            e.slo_fraction * e.issued / p.duration_s
        )
    # The report: the endpoint section and the Pareto figure of the sweep.
    (path,) = tmp_path.glob("*.json")
    paths = write_report([load_run(path)], tmp_path / "report")
    text = paths.markdown.read_text()
    assert "Serving endpoints" in text and "endpoint_pareto.png" in text
    assert "Inference under load" in text and "| tiny |" in text  # the label as workload


def test_a_dataset_supplies_the_prompts(openai_server: ServerFactory, tmp_path: Path) -> None:
    server = openai_server()
    data = tmp_path / "chats.jsonl"
    lines = [
        {
            "conversations": [
                {"from": "human", "value": f"question {i}"},
                {"from": "gpt", "value": "x" * 12},
            ]
        }
        for i in range(3)
    ]
    data.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    settings = ScenarioSettings(
        scenarios=["single-stream"],
        requests=10,
        endpoint=EndpointSettings(urls=[server.url], model="tiny", dataset=str(data), audits=False),
    )
    outcome = run_endpoints(RunConfig(preset="tiny", scenario=settings, out=tmp_path / "out"))
    (stored,) = load_run(outcome.path).scenarios
    assert stored.endpoint is not None and stored.endpoint.dataset_sha256 is not None
    prompts = {body["prompt"] for body in server.bodies[1:]}
    assert prompts <= {f"question {i}" for i in range(3)} and len(prompts) == 3
    assert {body["max_tokens"] for body in server.bodies[1:]} == {3}  # 12 chars / 4


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--endpoint", "URL"], "cannot reach the endpoint http://127.0.0.1:PORT/v1"),
        (["--endpoint", "ftp://x"], "--endpoint expects http(s) URLs"),
        (["--endpoint", "URL", "--model", ""], "--endpoint needs --model NAME"),
        (["--endpoint", "URL", "--api", "grpc"], "unknown --api 'grpc'"),
        (["--endpoint", "URL", "--concurrency", "1,x"], "--concurrency expects whole numbers"),
        (["--endpoint", "URL", "--concurrency", "0"], "--concurrency values must be at least 1"),
        (["--endpoint", "URL", "--label", "a,b"], "1 URL(s) but 2 label(s)"),
        (
            ["--endpoint", "URL", "--burstiness", "0"],
            "--burstiness: input should be greater than 0",
        ),
        (["--endpoint", "URL", "--dataset", "/nonexistent.jsonl"], "no such file"),
        (["--concurrency", "4"], "need --endpoint URL"),
    ],
)
def test_bad_endpoint_options_are_named(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, args: list[str], message: str
) -> None:
    port = free_port()  # nothing listens there
    url = f"http://127.0.0.1:{port}/v1"
    args = [url if a == "URL" else a for a in args]
    if "--model" not in args:
        args += ["--model", "tiny"]
    proc = invoke_bench(
        capsys, "run", "--preset", "tiny", "--scenario", "server", "--out", str(tmp_path), *args
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert message.replace("PORT", str(port)) in " ".join(proc.stderr.split())
    assert "Traceback" not in proc.stderr
    assert not list(tmp_path.glob("*.json"))  # nothing ran


def test_an_endpoint_needs_scenarios(capsys: pytest.CaptureFixture[str]) -> None:
    proc = invoke_bench(capsys, "run", "--endpoint", "http://127.0.0.1:1/v1", "--model", "m")
    assert proc.returncode == 2
    assert "scenario option(s); add --scenario" in " ".join(proc.stderr.split())


def test_bad_dataset_lines_are_named(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    data = tmp_path / "bad.jsonl"
    data.write_text('{"prompt": "ok"}\n{"text": "no prompt"}\n')
    proc = invoke_bench(
        capsys, "run", "--preset", "tiny", "--scenario", "server", "--endpoint",
        f"http://127.0.0.1:{free_port()}/v1", "--model", "tiny", "--dataset", str(data),
    )  # fmt: skip
    assert proc.returncode == 2
    assert "line 2 has neither a 'prompt' nor 'conversations'" in " ".join(proc.stderr.split())


def test_ctrl_c_keeps_every_measured_point(openai_server: ServerFactory, tmp_path: Path) -> None:
    server = openai_server(tpot_s=0.001)
    env = {**os.environ, "PYTHONPATH": str(Path.cwd())}
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness", "run", "--preset", "tiny", "--scenario",
         "single-stream,offline", "--endpoint", server.url, "--model", "tiny", "--lengths",
         "fixed", "--input-len", "8", "--output-len", "4", "--requests", "10",
         "--out", str(tmp_path)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        path = None
        for _ in range(600):  # up to 120 s: the single-stream point stored
            found = list(tmp_path.glob("*.json"))
            if found:
                try:
                    if load_run(found[0]).scenarios[0].single_stream is not None:
                        path = found[0]
                        break
                except Exception:
                    pass
            time.sleep(0.2)
        assert path is not None, "no single-stream point was stored"
        server.behaviour.fault, server.behaviour.fault_every = "hang", 1  # the run now waits
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    record = load_run(path)
    assert record.status == "incomplete"
    (result,) = record.scenarios
    assert result.single_stream is not None and result.single_stream.requests >= 10


def test_two_endpoint_runs_compare_like_scenarios(
    openai_server: ServerFactory, tmp_path: Path
) -> None:
    server = openai_server(ttft_s=0.01, tpot_s=0.005)
    runs = []
    for name in ("base", "new"):
        endpoint_run(
            tmp_path / name, server.url, scenarios=["single-stream"], lengths=FIXED, requests=10
        )
        (path,) = (tmp_path / name).glob("*.json")
        runs.append(load_run(path))
    figures = {row.figure for row in compare_scenarios(*runs)}
    assert {"single-stream p50 ttft", "single-stream p99 tpot"} <= figures
