"""Inference scenarios on real tiny models: the relations LoadGen scenarios must show (not
absolute times), a backend that adds a fixed delay, failures handled as for any case."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from harness.results.config import LatencyTargets, LengthSpec, RunConfig, ScenarioSettings
from harness.results.schema import ScenarioResult
from harness.scenarios.job import execute_scenario
from harness.scenarios.requests import poisson_arrivals
from harness.scenarios.runner import plan_scenarios
from tests.conftest import invoke_bench


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """One intra-op thread: on a shared machine a two-thread kernel stalls whenever either
    thread is descheduled, which swamps latencies of sub-millisecond requests."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def serve(workload: str, backend: str = "cpu", **settings: object) -> ScenarioResult:
    """The scenarios of `workload` at the tiny preset, run in this process."""
    config = RunConfig(
        backend=backend,
        workloads=[workload],
        preset="tiny",
        scenario=ScenarioSettings.model_validate(settings),
    )
    (spec,) = plan_scenarios(config)
    return execute_scenario(spec)


def test_llm_offline_beats_single_stream_and_max_rate_lies_between() -> None:
    quick = {"requests": 30, "min_duration_s": 0.2, "max_batch": 4}
    result = serve("gpt", lengths=LengthSpec(kind="uniform"), search_steps=2, **quick)
    assert result.status == "ok", result.error
    single, offline = result.single_stream, result.offline
    assert single is not None and offline is not None
    assert offline.achieved_rate >= single.achieved_rate
    assert result.max_rate is not None
    assert single.achieved_rate <= result.max_rate <= offline.achieved_rate
    assert set(single.percentiles) == {"latency", "ttft", "tpot"}
    assert result.kind == "tokens" and set(result.targets) == {"ttft", "tpot"}
    assert len(single.latency_s) == single.requests == len(single.input_len)
    p99 = single.percentiles["ttft"]
    assert p99.p99_ci95[0] <= p99.p99 <= p99.p99_ci95[1]

    # Server p99 grows with the arrival rate: a fifth of single-stream vs twice offline.
    rates = [single.achieved_rate / 5, 2 * offline.achieved_rate]
    loaded = serve("gpt", scenarios=["server"], rates=rates, **quick)
    low, high = loaded.server
    assert [low.target_rate, high.target_rate] == rates
    for metric in ("latency", "ttft"):
        assert high.percentiles[metric].p99 > low.percentiles[metric].p99


def test_same_seed_issues_the_same_arrivals_and_lengths() -> None:
    loose = LatencyTargets(ttft_s=10.0, tpot_s=10.0, latency_s=10.0)  # decided at once
    settings = {"scenarios": ["server"], "rates": [200.0], "requests": 10, "targets": loose}
    runs = [serve("gpt", min_duration_s=0.1, **settings) for _ in range(2)]
    first, second = (run.server[0] for run in runs)
    assert first.arrival_s == second.arrival_s == poisson_arrivals(200.0, first.requests, 0, 0)
    assert first.input_len == second.input_len and first.output_len == second.output_len
    assert first.requests == 20  # rate x min duration


def predicted_p99(
    arrivals: list[float], service_s: float, per_item_s: float, max_batch: int, max_wait_s: float
) -> float:
    """p99 latency of the item scheduler (batch when full or when the oldest request has
    waited max_wait_s) if a batch of n took service_s + n * per_item_s: the prediction."""
    done = np.zeros(len(arrivals))
    free, first = 0.0, 0
    while first < len(arrivals):
        start = max(free, arrivals[first])
        fill = min(first + max_batch, len(arrivals)) - 1
        if arrivals[fill] > start:  # not full yet: wait for it, or for the deadline
            start = max(start, min(arrivals[first] + max_wait_s, arrivals[fill]))
        end = first
        while end < len(arrivals) and end - first < max_batch and arrivals[end] <= start:
            end += 1
        free = start + service_s + (end - first) * per_item_s
        done[first:end] = free
        first = end
    return float(np.quantile(done - np.asarray(arrivals), 0.99))


def test_a_fixed_delay_per_forward_lowers_the_max_rate_as_predicted(
    test_plugins: dict[str, str],
) -> None:
    from accelbench_test_plugins import FORWARD_DELAY_S  # type: ignore[import-not-found]

    batch, wait, bound = 4, 0.01, 0.08
    target = LatencyTargets(ttft_s=1.0, tpot_s=1.0, latency_s=bound)
    settings = {"max_batch": batch, "max_wait_s": wait, "targets": target, "search_steps": 6}
    # The device work per request without the delay, from full batches on the plain CPU.
    base = serve("convnet", scenarios=["offline"], max_batch=batch)
    assert base.offline is not None
    per_item = 1.0 / base.offline.achieved_rate
    # The delay as this machine's scheduler realizes it (a sleep overshoots under load).
    sleeps = []
    for _ in range(5):
        started = time.perf_counter()
        time.sleep(FORWARD_DELAY_S)
        sleeps.append(time.perf_counter() - started)
    delay = float(np.median(sleeps))
    slow = serve("convnet", backend="slow-forward", **settings)
    assert slow.status == "ok", slow.error
    assert slow.max_rate is not None

    def meets(rate: float) -> bool:
        count = max(64, int(np.ceil(rate * 0.5)))  # the tiny preset's requests per point
        arrivals = poisson_arrivals(rate, count, 0, 0)
        return predicted_p99(arrivals, delay, per_item, batch, wait) <= bound

    low, high = 1.0, batch / FORWARD_DELAY_S
    for _ in range(40):
        middle = (low + high) / 2
        low, high = (middle, high) if meets(middle) else (low, middle)
    assert slow.max_rate == pytest.approx(low, rel=0.2)
    assert slow.max_rate < batch / FORWARD_DELAY_S  # what full batches could at most sustain


def test_a_scenario_case_fails_like_any_case(
    test_plugins: dict[str, str], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    nan = serve("convnet", backend="nan-forward", scenarios=["single-stream"], requests=10)
    assert nan.status == "failed" and nan.error is not None
    assert nan.error.kind == "nonfinite" and "NaN" in nan.error.message
    unsupported = serve("mlp", scenarios=["single-stream"], requests=10)
    assert unsupported.status == "unsupported" and unsupported.error is not None
    assert "does not serve requests" in unsupported.error.message

    # A crash in the worker is that case's failure, recorded in a complete results file.
    proc = invoke_bench(
        capsys, "run", "--backend", "segv-forward", "--workload", "convnet",
        "--preset", "tiny", "--scenario", "single-stream", "--requests", "10",
        "--out", str(tmp_path),
    )  # fmt: skip
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "1 scenario case(s) failed" in proc.stdout
    (path,) = tmp_path.glob("*.json")
    stored = json.loads(path.read_text())
    assert stored["status"] == "complete"
    assert [s["error"]["kind"] for s in stored["scenarios"]] == ["crash"]
    assert "SIGSEGV" in stored["scenarios"][0]["error"]["message"]


def test_cli_scenario_run_writes_and_prints_the_scenarios(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    proc = invoke_bench(
        capsys, "run", "--workload", "convnet", "--preset", "tiny", "--isolate", "none",
        "--scenario", "server", "--rate", "50,100", "--requests", "10", "--out", str(tmp_path),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "inference scenarios" in proc.stdout and "convnet/serve/fp32/b4/tiny" in proc.stdout
    (path,) = tmp_path.glob("*.json")
    stored = json.loads(path.read_text())
    (scenario,) = stored["scenarios"]
    assert [p["target_rate"] for p in scenario["server"]] == [50.0, 100.0]
    assert stored["cases"] == [] and stored["config"]["scenario"]["rates"] == [50.0, 100.0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--scenario", "multi-stream"],
            "unknown --scenario 'multi-stream'; choose from: single-stream, offline, server",
        ),
        (["--scenario", "server", "--rate", "fast"], "--rate expects request rates"),
        (["--scenario", "server", "--rate", "-3"], "--rate values must be positive"),
        (["--scenario", "server", "--lengths", "zipf"], "unknown --lengths 'zipf'"),
        (["--scenario", "server", "--target-tpot-ms", "0"], "--target-tpot-ms must be a positive"),
        (
            ["--scenario", "server", "--requests", "3"],
            "--requests: input should be greater than or",
        ),
        (["--scenario", "server", "--nproc", "2"], "--scenario runs in one process"),
    ],
)
def test_bad_scenario_options_are_named(
    capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    proc = invoke_bench(capsys, "run", "--workload", "gpt", "--preset", "tiny", *args)
    assert proc.returncode == 2
    assert message in " ".join(proc.stderr.split())
