"""The case pipeline's shared pieces: the one "never raises" wrapper and failed-result
constructor (harness.errors), and the fold of raw rounds into a case (harness.run.fold)."""

from __future__ import annotations

import pytest

from harness.errors import failed_result
from harness.measurement.guard import never_raises
from harness.results.schema import CaseKey, CaseResult, ScenarioResult
from harness.run.case import PhaseSamples, RoundEnergy, RoundResult
from harness.run.fold import fold_rounds
from workloads.base import CaseUnsupported

KEY = CaseKey(
    workload="mlp", workload_version="1", mode="train", dtype="fp32", batch=4, preset="tiny"
)


def _raise(exc: Exception) -> CaseResult:
    raise exc


def _failed(kind: str, message: str) -> CaseResult:
    return failed_result(CaseResult, KEY, kind, message)


def test_never_raises_turns_every_failure_into_a_result_that_says_what_went_wrong() -> None:
    unsupported = never_raises(lambda: _raise(CaseUnsupported("needs --nproc >= 2")), _failed)
    assert unsupported.status == "unsupported" and unsupported.error
    assert unsupported.error.message == "needs --nproc >= 2"
    assert unsupported.started_at is not None and unsupported.duration_s is not None
    broken = never_raises(lambda: _raise(ValueError("bad shape")), _failed)
    assert broken.status == "failed" and broken.error and broken.error.kind == "exception"
    assert broken.error.message.startswith("ValueError: bad shape (at ")
    oom = never_raises(lambda: _raise(RuntimeError("CUDA out of memory")), _failed)
    assert oom.error and oom.error.kind == "oom"
    served = failed_result(ScenarioResult, KEY, "nonfinite", "NaN", kind="tokens")
    assert served.kind == "tokens" and served.error and served.error.kind == "nonfinite"
    scenario = failed_result(ScenarioResult, KEY, "timeout", "too slow", seed=3)
    assert (scenario.status, scenario.seed, scenario.error and scenario.error.kind) == (
        "failed",
        3,
        "timeout",
    )


def _round(index: int, samples: list[float], **extra: object) -> RoundResult:
    return RoundResult.model_validate(
        {
            "key": KEY,
            "round": index,
            "samples_s": samples,
            "iterations_per_sample": 4,
            "warmup_iterations": 2,
            "cold_start_s": 0.5 if index == 0 else None,
            "total_time_s": 1.0,
            "work_items": 4.0,
            "work_unit": "samples",
            "flops": 100.0,
            "world": 2,
            **extra,
        }
    )


def test_the_fold_computes_every_figure_once_from_the_raw_rounds() -> None:
    rounds = [
        _round(
            0,
            [1.0, 1.2, 1.1],
            yardsticks={"train": 0.1, "compute": 0.2},
            energy=RoundEnergy(joules=10.0, seconds=2.0, method="RAPL"),
            phases=PhaseSamples(iterations=[{"forward": 0.4, "backward": 0.5}], step_times=[1.0]),
            host_fallbacks=["aten::b"],
            peak_memory_bytes=1000,
        ),
        _round(
            1,
            [2.0, 2.2],
            yardsticks={"train": 0.2},
            energy=RoundEnergy(joules=30.0, seconds=2.0, method="RAPL"),
            phases=PhaseSamples(iterations=[{"forward": 0.6, "backward": 0.7}], step_times=[1.4]),
            host_fallbacks=["aten::a", "aten::b"],
            extra={"late": 1.0},
        ),
    ]
    case = fold_rounds(KEY, rounds, precision=0.01)
    m = case.measurement
    assert case.status == "ok" and m is not None
    assert m.samples_s == [1.0, 1.2, 1.1, 2.0, 2.2] and m.sample_rounds == [0, 0, 0, 1, 1]
    assert m.median == pytest.approx((1.1 + 2.1) / 2)  # median of round medians
    assert m.rounds == 2 and m.cold_start_s == 0.5 and m.warmup_iterations == 4
    assert case.throughput and case.throughput.value == pytest.approx(2 * 4 / m.median)
    assert case.flops_per_step == 200.0
    assert case.yardstick == {"train": [0.1, 0.2]}  # a series that missed a round is dropped
    assert case.energy and case.energy.joules == 40.0 and case.energy.average_power_w == 10.0
    assert case.phases and case.phases.iterations == 2
    assert case.phases.phases_s["forward"] == pytest.approx(0.5)
    assert case.host_fallbacks == ["aten::a", "aten::b"]
    assert case.peak_memory_bytes == 1000 and case.extra == {"late": 1.0}
    refused = fold_rounds(KEY, [_round(0, [1.0], energy_note="not measured: why")])
    assert refused.energy is None and refused.energy_note == "not measured: why"
    nonfinite = _round(1, [3.0], status="failed", error={"kind": "nonfinite", "message": "NaN"})
    failed = fold_rounds(KEY, [rounds[0], nonfinite])
    assert failed.status == "failed" and failed.error and failed.error.kind == "nonfinite"
    assert failed.measurement and failed.measurement.samples_s == [3.0]
    with pytest.raises(ValueError, match="at least one round"):
        fold_rounds(KEY, [])
