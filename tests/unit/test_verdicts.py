"""One rule where a threshold meets a confidence interval: above only when the whole CI is
above, within only when the whole CI is below, otherwise undecided (answer, compare and
scenario targets all follow it)."""

from __future__ import annotations

import pytest

from harness.analysis.answer import TrainInferRow, training_verdict
from harness.analysis.compare import classify
from harness.results.schema import Percentiles, ScenarioPoint
from harness.scenarios.summary import judge
from harness.stats import SampleComparison, threshold_side
from tests.run_records import fidelity


@pytest.mark.parametrize(
    ("ci", "side"),
    [
        ((2.1, 3.0), "above"),
        ((1.1, 1.9), "within"),
        ((1.1, 3.09), "undecided"),
        ((2.0, 2.5), "undecided"),
        ((1.5, 2.0), "undecided"),
        ((2.2, 2.2), "above"),
    ],
)
def test_threshold_side(ci: tuple[float, float], side: str) -> None:
    assert threshold_side(ci, 2.0) == side


def row(penalty: float, ci: tuple[float, float] | None) -> TrainInferRow:
    return TrainInferRow(
        system="cpu:x",
        workload="mlp",
        dtype="fp32",
        batch=64,
        preset="small",
        t_train_s=penalty * 3,
        t_infer_s=1.0,
        time_ratio=penalty * 3,
        flops_ratio=3.0,
        penalty=penalty,
        penalty_ci=ci,
    )


CHECKED = [fidelity("mlp", "cpu", "pass")]
WARNED = [fidelity("mlp", "cpu", "warn")]


def test_a_penalty_whose_ci_straddles_2_is_undecided_not_a_caveat() -> None:
    verdict = training_verdict([], [row(2.2, (1.1, 3.09))], CHECKED)
    assert verdict.status == "undecided"
    assert verdict.reasons == [
        "training penalty 2.20 for mlp/fp32/b64 is undecided: CI 1.10-3.09 straddles 2; "
        "more rounds (--rounds) decide it"
    ]


def test_a_penalty_is_above_a_threshold_only_when_its_lower_bound_is() -> None:
    above = training_verdict([], [row(2.5, (2.1, 2.9))], CHECKED)
    assert above.status == "caveats"
    assert above.reasons == ["training penalty 2.50 (CI 2.10-2.90) for mlp/fp32/b64 is above 2"]
    within = training_verdict([], [row(1.9, (1.5, 1.99))], CHECKED)
    assert within.status == "ready"
    assert training_verdict([], [row(5.0, (4.2, 6.0))], CHECKED).status == "not ready"


def test_straddling_4_is_undecided_even_beside_other_caveats() -> None:
    verdict = training_verdict([], [row(4.1, (3.0, 5.0))], WARNED)
    assert verdict.status == "undecided"
    assert "straddles 4" in verdict.reasons[0]
    assert "fidelity warn" in verdict.reasons[1]


def test_straddling_2_beside_another_caveat_stays_a_caveat_and_is_named() -> None:
    verdict = training_verdict([], [row(2.2, (1.1, 3.09))], WARNED)
    assert verdict.status == "caveats"
    assert "straddles 2" in verdict.reasons[-1]


def test_compare_calls_a_regression_only_when_the_ci_is_wholly_beyond() -> None:
    assert classify(SampleComparison(1.3, (1.15, 1.5), 0.001), 0.10) == "regressed"
    assert classify(SampleComparison(1.3, (1.05, 1.5), 0.001), 0.10) == "noisy"
    assert classify(SampleComparison(0.7, (0.6, 0.85), 0.001), 0.10) == "improved"


def test_a_scenario_target_inside_the_p99_ci_is_undecided() -> None:
    def point(low: float, high: float) -> ScenarioPoint:
        stats = Percentiles(
            p50=0.1, p90=0.2, p99=(low + high) / 2, p50_ci95=(0.1, 0.1), p90_ci95=(0.2, 0.2),
            p99_ci95=(low, high),
        )  # fmt: skip
        return ScenarioPoint(
            scenario="server", requests=10, duration_s=1.0, achieved_rate=10.0, arrival_s=[],
            latency_s=[],
            percentiles={"latency": stats},
        )  # fmt: skip

    straddling = judge(point(0.4, 0.6), {"latency": 0.5})
    assert straddling.decided is False
    below = judge(point(0.3, 0.45), {"latency": 0.5})
    assert below.decided is True and below.meets_target is True
    above = judge(point(0.55, 0.7), {"latency": 0.5})
    assert above.decided is True and above.meets_target is False


def test_a_flagged_trend_is_a_note_naming_its_change_and_cause() -> None:
    from harness.analysis.answer import trend_notes
    from harness.results.schema import CaseKey, CaseResult, SampleTrend

    key = CaseKey(
        workload="mlp", mode="train", dtype="fp32", batch=64, preset="small", workload_version="1"
    )
    flagged = SampleTrend(
        tau=0.6, p_value=1e-5, slope=0.02, change=0.8, samples=60, flagged=True,
        cause="denormal values (40 in gradients)",
    )  # fmt: skip
    steady = flagged.model_copy(update={"flagged": False})
    cases = [
        CaseResult(key=key, status="ok", trend=flagged),
        CaseResult(key=key.model_copy(update={"batch": 8}), status="ok", trend=steady),
    ]
    assert trend_notes(cases) == [
        "mlp/train/fp32/b64/small: step time grows 80% over a round (Kendall tau 0.60, p 1e-05; "
        "Theil-Sen slope +2.00% of the median per sample): denormal values (40 in gradients)"
    ]
