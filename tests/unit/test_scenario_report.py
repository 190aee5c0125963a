"""Scenario results in `bench compare` and `bench report`: synthetic records (real schema
objects, made-up latencies) with known differences."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from harness.analysis.compare import Thresholds
from harness.analysis.scenario_compare import compare_scenarios
from harness.analysis.serving import serving_rows
from harness.report.build import write_report
from harness.results.schema import CaseError, CaseKey, RunRecord, ScenarioResult
from harness.scenarios.engine import Timings
from harness.scenarios.summary import judge, point
from tests.run_records import GPT_PARAMS, record

KEY = CaseKey(
    workload="gpt", workload_version="1", mode="serve", dtype="fp32", batch=4,
    preset="small", params=GPT_PARAMS,
)  # fmt: skip
TARGETS = {"ttft": 0.05, "tpot": 0.02}


def _timings(scale: float, n: int, seed: int, rate: float | None = None) -> Timings:
    rng = np.random.default_rng(seed)
    arrivals = np.cumsum(rng.exponential(1 / rate, n)) if rate else np.zeros(n)
    first = arrivals + scale * rng.uniform(0.004, 0.006, n)
    done = first + 7 * scale * rng.uniform(0.0015, 0.0025, n)
    return Timings(
        arrival_s=arrivals.tolist(), first_s=first.tolist(), done_s=done.tolist(),
        duration_s=float(done.max()),
    )  # fmt: skip


def scenario(scale: float, max_rate: float, missed: float | None, seed: int) -> ScenarioResult:
    lengths = ([16] * 100, [8] * 100)
    curve = [
        judge(point("server", _timings(scale * f, 100, seed + i, rate), *lengths, rate), TARGETS)
        for i, (rate, f) in enumerate([(50.0, 1.0), (100.0, 2.0), (200.0, 6.0)])
    ]
    return ScenarioResult(
        key=KEY,
        status="ok",
        kind="tokens",
        targets=TARGETS,
        single_stream=point("single-stream", _timings(scale, 100, seed), *lengths),
        offline=point("offline", _timings(scale, 100, seed + 9), *lengths),
        server=curve,
        max_rate=max_rate,
        missed_rate=missed,
    )


def run_with(result: ScenarioResult, offset_s: int = 0) -> RunRecord:
    run = record("cpu", "EPYC", offset_s=offset_s)
    run.scenarios.append(result)
    return run


def test_compare_flags_a_slower_single_stream_and_a_lower_max_rate() -> None:
    base = run_with(scenario(1.0, 100.0, 110.0, seed=1))
    slower = run_with(scenario(1.5, 60.0, 66.0, seed=2), offset_s=60)
    rows = {row.figure: row for row in compare_scenarios(base, slower, Thresholds())}
    assert rows["single-stream p50 ttft"].verdict == "regressed"
    assert rows["single-stream p99 latency"].ratio > 1.3  # type: ignore[operator]
    assert rows["max rate at target"].verdict == "regressed"
    assert rows["offline throughput"].verdict == "noisy"  # one figure: never established

    same = run_with(scenario(1.0, 104.0, 114.0, seed=3), offset_s=60)
    again = {row.figure: row for row in compare_scenarios(base, same, Thresholds())}
    assert again["single-stream p50 ttft"].verdict in ("unchanged", "noisy")
    assert again["max rate at target"].verdict == "unchanged"


def test_compare_names_a_failed_scenario_and_an_unbracketed_max_rate() -> None:
    base = run_with(scenario(1.0, 100.0, None, seed=1))  # the offline bound met the targets
    lower = run_with(scenario(1.0, 70.0, 77.0, seed=1), offset_s=60)
    (rate,) = [r for r in compare_scenarios(base, lower) if r.figure == "max rate at target"]
    assert rate.verdict == "noisy" and "search brackets" in rate.reason
    broken = scenario(1.0, 100.0, 110.0, seed=1).model_copy(
        update={"status": "failed", "error": CaseError(kind="crash", message="killed by SIGSEGV")}
    )
    (row,) = compare_scenarios(base, run_with(broken, offset_s=60))
    assert row.verdict == "failed" and "SIGSEGV" in row.reason


def test_report_shows_the_buyer_figure_beside_the_penalty_and_the_curve(tmp_path: Path) -> None:
    run = run_with(scenario(1.0, 123.0, 130.0, seed=1))
    (row,) = serving_rows([run])
    assert row.claim == "serves 123 req/s at p99 TTFT <= 50 ms, p99 TPOT <= 20 ms"
    assert [p.rate for p in row.curve] == [50.0, 100.0, 200.0]
    paths = write_report([run], tmp_path)
    markdown = paths.markdown.read_text()
    assert "## Inference under load" in markdown
    assert "inference under load (scenarios)" in markdown  # the column beside the penalty
    assert markdown.count("serves 123 req/s at p99 TTFT \\<= 50 ms") == 2
    assert (tmp_path / "figures" / "latency_vs_rate.png").stat().st_size > 0
