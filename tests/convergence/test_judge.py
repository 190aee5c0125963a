"""The converge mode's pure parts: band, steps ratio, stability events, verdict, effective
penalty (harness.results.convergence_judge, harness.stats); no torch."""

from __future__ import annotations

import pytest

from harness.results import convergence_judge as judge
from harness.results.schema import CaseResult, Convergence, ConvergenceEvent
from harness.stats import first_at_or_below, jump_ratios, product_ci


def _result(steps: list[int | None], reference: list[int | None], **extra: object) -> Convergence:
    ratio = judge.steps_ratio(steps, reference, 90)
    return Convergence(
        target_loss=2.5,
        target_step=30,
        eval_every=10,
        eval_batches=4,
        step_cap=90,
        seeds=list(range(len(steps))),
        steps_to_target=steps,
        reference_steps_to_target=reference,
        band=judge.band(reference, [], 10),
        steps_ratio=ratio[0] if ratio else None,
        steps_ratio_ci=ratio[1] if ratio else None,
        **extra,  # type: ignore[arg-type]
    )


def test_first_step_at_or_below_target() -> None:
    assert first_at_or_below([0, 10, 20, 30], [5.0, None, 2.4, 2.0], 2.5) == 20
    assert first_at_or_below([0, 10], [5.0, 3.0], 2.5) is None


def test_band_spans_reference_and_honest_seeds_widened_by_one_eval() -> None:
    band = judge.band([30, 40, 30], [50, None, 30], 10, "cpu:bf16")
    assert band is not None
    assert (band.low, band.high, band.honest_name) == (20, 60, "cpu:bf16")
    assert judge.band([None, None], [], 10) is None


def test_no_steps_ratio_when_the_reference_reached_the_target_untrained() -> None:
    assert judge.steps_ratio([10], [0], 30) is None


def test_steps_ratio_counts_unreached_seeds_at_the_cap() -> None:
    ratio = judge.steps_ratio([60, None, 60], [30, 30, 30], 90)
    assert ratio is not None
    assert ratio[0] == pytest.approx(2.0)
    assert ratio[1][0] <= 2.0 <= ratio[1][1]


@pytest.mark.parametrize(
    ("steps", "verdict", "words"),
    [
        ([30, 40, 30], "pass", "within the band"),
        ([80, 80, 70], "slow", "needs 2.67x the reference's steps"),
        ([10, 10, 10], "fast", "faster than the reference band"),
        ([None, None, 30], "not_reached", "not reached in 90 steps"),
    ],
)
def test_verdict_from_steps_against_the_band(
    steps: list[int | None], verdict: str, words: str
) -> None:
    result = _result(steps, [30, 30, 30])
    got, reasons = judge.judge(result)
    assert got == verdict
    assert words in " ".join(reasons)


def test_nonfinite_and_memory_growth_fail_spikes_are_unstable() -> None:
    events = [ConvergenceEvent(seed=0, step=24, kind="grad_outlier", value=100.0)]
    got, reasons = judge.judge(_result([30], [30], events=events, grad_outlier_threshold=3.0))
    assert got == "unstable"
    assert "gradient-norm outlier" in reasons[0] and "24" in reasons[0]
    events.append(ConvergenceEvent(seed=0, step=40, kind="memory_growth", value=64 * 2**20))
    got, reasons = judge.judge(_result([30], [30], events=events))
    assert got == "failed"
    assert "memory grew steadily over the run (+64 MiB)" in reasons[0]
    events = [ConvergenceEvent(seed=0, step=7, kind="nonfinite")]
    got, reasons = judge.judge(_result([None], [30], events=events))
    assert got == "failed"
    assert reasons[0] == "non-finite values at step 7 (seed 0)"


def test_reference_events_do_not_count() -> None:
    events = [ConvergenceEvent(seed=0, step=24, kind="spike", value=9.0, run="reference")]
    assert judge.judge(_result([30], [30], events=events))[0] == "pass"


def test_jump_events_find_the_spiking_steps() -> None:
    values: list[float | None] = [1.0] * 60
    for step in (24, 49):
        values[step] = 100.0
    assert jump_ratios(values, 10)[24] == pytest.approx(100.0)
    calm = [[1.0 + 0.01 * (i % 3) for i in range(60)]]
    threshold = judge.jump_threshold(calm, judge.MIN_OUTLIER_THRESHOLD)
    assert threshold == judge.MIN_OUTLIER_THRESHOLD
    events = judge.jump_events(0, "grad_outlier", values, threshold)
    assert [e.step for e in events] == [24, 49]


def test_memory_event_needs_steady_growth_beyond_noise() -> None:
    steps = list(range(0, 100, 10))
    leaking = [100 * 2**20 + i * 8 * 2**20 for i in range(10)]
    event = judge.memory_event(0, steps, leaking)
    assert event is not None and event.value == 72 * 2**20 and event.step == 90
    noisy = [100 * 2**20 + (i % 2) * 2**20 for i in range(10)]
    assert judge.memory_event(0, steps, noisy) is None


def test_effective_penalty_is_steps_ratio_times_penalty_with_a_combined_ci() -> None:
    result = _result([60, 60, 60], [30, 30, 30])
    result.steps_ratio_ci = (1.5, 2.5)
    value, ci = judge.effective_penalty(result, 1.2, (1.1, 1.3))  # type: ignore[misc]
    assert value == pytest.approx(2.4)
    assert ci[0] < 2.4 < ci[1]
    assert ci[0] > 1.5 * 1.1 and ci[1] < 2.5 * 1.3
    assert product_ci(2.0, (2.0, 2.0), 3.0, (3.0, 3.0)) == (6.0, 6.0)


def test_older_case_results_load_without_convergence() -> None:
    case = CaseResult.model_validate(
        {
            "key": {
                "workload": "mlp",
                "workload_version": "1",
                "mode": "train",
                "dtype": "fp32",
                "batch": 16,
                "preset": "tiny",
            },
            "status": "ok",
        }
    )
    assert case.convergence is None


def test_compare_uses_the_seed_spread_as_noise() -> None:
    base = _result([30, 40, 30], [30, 40, 30])
    slower = _result([60, 70, 60], [30, 40, 30])
    overlapping = _result([40, 50, 40], [30, 40, 30])
    assert judge.compare_convergence("c", base, slower).verdict == "regressed"
    assert judge.compare_convergence("c", slower, base).verdict == "improved"
    same = judge.compare_convergence("c", base, overlapping)
    assert same.verdict == "unchanged" and same.reason == "within the seeds' spread"
    other = base.model_copy(update={"target_loss": 3.0})
    assert judge.compare_convergence("c", base, other).verdict == "not comparable"
