"""State-dependent cost: the within-round trend detector on recorded samples and on one real
drifting step, the denormal counter, and the CPU's denormal setting in every thread."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from backends.registry import BackendError, get_backend
from harness.measurement.denormals import count_denormals, denormal_values, sample_trend
from harness.measurement.timing import measure
from harness.results.schema import CaseResult, DenormalCount
from harness.stats import within_round_trend
from tests.conftest import invoke_bench

ROOT = Path(__file__).resolve().parents[2]


def rounds(per_round: list[list[float]]) -> tuple[list[float], list[int]]:
    samples = [x for block in per_round for x in block]
    labels = [r for r, block in enumerate(per_round) for _ in block]
    return samples, labels


def noisy(n: int, seed: int, level: float = 1.0, growth: float = 0.0) -> list[float]:
    """n samples around `level` (2% noise) growing by `growth` x level over the round."""
    rng = np.random.default_rng(seed)
    ramp = 1.0 + growth * np.arange(n) / (n - 1)
    return [float(x) for x in level * ramp * (1.0 + 0.02 * rng.standard_normal(n))]


def test_a_step_that_grows_within_every_round_is_flagged_with_its_slope() -> None:
    samples, labels = rounds([noisy(20, seed, growth=0.5) for seed in range(5)])
    trend = within_round_trend(samples, labels)
    assert trend is not None and trend.flagged
    assert trend.tau > 0.5 and trend.p_value < 1e-6
    assert trend.change == pytest.approx(0.5 / 1.25, abs=0.05)  # of the median, 1.25
    assert trend.samples == 100


def test_a_steady_step_is_not_flagged_even_when_rounds_differ_in_speed() -> None:
    # The machine ran 40% slower in round 2 (what the yardsticks read): not a trend.
    levels = [1.0, 1.0, 1.4, 1.0, 1.1]
    samples, labels = rounds([noisy(20, s, level) for s, level in enumerate(levels)])
    trend = within_round_trend(samples, labels)
    assert trend is not None and not trend.flagged
    assert abs(trend.change) < 0.05


def test_a_trend_too_small_to_matter_is_not_flagged() -> None:
    samples, labels = rounds([noisy(40, seed, growth=0.04) for seed in range(5)])
    trend = within_round_trend(samples, labels)
    assert trend is not None and trend.p_value < 0.01 and not trend.flagged


def test_too_few_samples_give_no_trend() -> None:
    assert within_round_trend([1.0, 2.0, 3.0, 4.0], [0, 0, 1, 1]) is None
    assert within_round_trend([1.0] * 10, [0] * 10) is None


def test_a_real_step_that_sleeps_longer_each_call_is_flagged() -> None:
    calls = [0]

    def drifting() -> None:
        calls[0] += 1
        time.sleep(0.002 * (1 + calls[0] // 4))  # sample k sleeps ~(k + 1) x 2 ms a call

    measurement = measure(
        drifting, warmup_s=0.0, warmup_iterations=0, min_samples=12, max_samples=12, iterations=4,
        time_cold_start=False, precision=1e-9,
    )  # fmt: skip
    trend = sample_trend(measurement, DenormalCount(gradients=3))
    assert trend is not None and trend.flagged and trend.change > 0.1
    assert trend.cause is not None and "3 in gradients" in trend.cause


@pytest.fixture
def ieee_denormals() -> Iterator[None]:
    """This thread keeps IEEE denormals for the test (a test before it in this process may
    have set flush-to-zero, which would flush the values the test plants), then gets back
    the setting it had."""
    smallest = torch.ones(1, dtype=torch.int32).view(torch.float32)  # one element: this thread
    flushing = bool((smallest * 1.0 == 0).item())
    torch.set_flush_denormal(False)
    yield
    torch.set_flush_denormal(flushing)


@pytest.mark.usefixtures("ieee_denormals")
def test_denormals_are_counted_in_parameters_gradients_optimizer_state_and_activations() -> None:
    tiny = torch.finfo(torch.float32).tiny
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 2))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x = torch.ones(2, 4)

    def step() -> None:
        optimizer.zero_grad()
        model(x).sum().backward()
        optimizer.step()

    step()
    with torch.no_grad():
        model[0].weight[0, :3] = tiny / 4
        model[1].weight.grad[0, 0] = tiny / 8
        next(iter(optimizer.state.values()))["momentum_buffer"].view(-1)[0] = tiny / 2
    counted = count_denormals(model, optimizer)
    assert (counted.gradients, counted.optimizer_state) == (1, 1)
    assert (counted.parameters, counted.activations, counted.values) == (3, None, 3 * 30)
    # Denormal constants are computed here, not written as literals: a literal such as 1e-320
    # is parsed when the module is compiled, and reads 0.0 if that thread flushed denormals.
    assert denormal_values([torch.tensor([0.0, tiny, -tiny / 2, tiny / 2**20])]) == 2
    assert denormal_values([torch.tensor([1e-6, tiny / 128], dtype=torch.bfloat16)]) == 1
    assert denormal_values([torch.tensor([1e-6, 1e-3], dtype=torch.float16)]) == 1
    fp64_denormal = torch.finfo(torch.float64).tiny / 2**20
    assert denormal_values([torch.tensor([fp64_denormal], dtype=torch.float64)]) == 1
    with_step = count_denormals(model, optimizer, step=step)
    assert with_step.activations is not None


def test_results_without_trend_or_denormals_still_load() -> None:
    case = CaseResult.model_validate(
        {
            "key": {
                "workload": "mlp", "mode": "train", "dtype": "fp32", "batch": 8,
                "preset": "tiny", "workload_version": "1",
            },
            "status": "ok",
        }
    )  # fmt: skip
    assert case.trend is None and case.denormals is None


PROBE = textwrap.dedent(
    """
    import torch
    torch.set_num_threads(2)
    from backends.cpu import CPUBackend, denormal_flush_coverage
    {before}
    torch.ones(1 << 20) * 2.0  # the first parallel operation starts the intra-op threads
    {after}
    print(denormal_flush_coverage())
    """
)


def coverage(before: str, after: str = "", policy: str = "flush") -> float:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ACCELBENCH_CPU_DENORMALS": policy}
    code = PROBE.format(before=before, after=after)
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return float(done.stdout.strip().splitlines()[-1])


def test_the_cpu_flushes_denormals_in_every_thread_when_prepared_first() -> None:
    assert coverage("CPUBackend.prepare_process()") == 1.0
    assert coverage("CPUBackend.prepare_process()", policy="keep") == 0.0
    # Set after the threads exist, the flag reaches the calling thread only.
    late = coverage("", "torch.set_flush_denormal(True)")
    assert 0.0 < late < 1.0


def test_a_bad_denormal_setting_is_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACCELBENCH_CPU_DENORMALS", "sometimes")
    with pytest.raises(BackendError) as caught:
        get_backend("cpu")
    assert str(caught.value) == (
        "backend 'cpu' is unavailable: $ACCELBENCH_CPU_DENORMALS must be one of flush, keep, "
        "got 'sometimes'."
    )
    monkeypatch.setenv("ACCELBENCH_CPU_DENORMALS", "keep")
    assert get_backend("cpu").settings()["cpu.denormals"] == "keep"


def test_bench_run_refuses_a_bad_denormal_setting_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ACCELBENCH_CPU_DENORMALS", "sometimes")
    args = ["run", "--backend", "cpu", "--workload", "mlp", "--preset", "tiny"]
    proc = invoke_bench(capsys, *args, "--out", str(tmp_path))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    message = "$ACCELBENCH_CPU_DENORMALS must be one of flush, keep, got 'sometimes'."
    assert message in " ".join(proc.stderr.split()), proc.stderr
    assert "Traceback" not in proc.stderr
    assert not list(tmp_path.glob("*.json"))
