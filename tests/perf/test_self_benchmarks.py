"""Self-benchmarks of the harness (pytest-benchmark). CI runs them with --benchmark-disable,
i.e. once each as a smoke test; run `pytest tests/perf --benchmark-enable` for the figures."""

from pathlib import Path

import torch
from pytest_benchmark.fixture import BenchmarkFixture

from backends.cpu import CPUBackend
from harness.measurement.timing import summarize
from harness.results.store import claim_run_path, save_run
from tests.unit.test_store import make_record


def test_host_timer_block_of_empty_calls(benchmark: BenchmarkFixture) -> None:
    """Cost of the measure loop itself: 1000 empty calls through the CPU timer."""
    timer = CPUBackend().timer()
    seconds = benchmark(timer.time_block, lambda: None, 1000)
    assert seconds > 0


def test_summarize_1000_samples(benchmark: BenchmarkFixture) -> None:
    samples = torch.rand(1000).add(1.0).tolist()
    m = benchmark(summarize, samples, iterations_per_sample=1)
    assert m.n == 1000


def test_store_write_of_a_run_with_100_cases(benchmark: BenchmarkFixture, tmp_path: Path) -> None:
    from harness.results.schema import CaseKey, CaseResult

    record = make_record()
    samples = torch.rand(200).add(1.0).tolist()
    measurement = summarize(samples, iterations_per_sample=10)
    key = CaseKey(
        workload="mlp", workload_version="1", mode="train", dtype="fp32", batch=8, preset="tiny"
    )
    record.cases = [CaseResult(key=key, status="ok", measurement=measurement)] * 100
    path = claim_run_path(tmp_path, record)
    benchmark(save_run, record, path)
    assert path.stat().st_size > 100 * 200 * 10
