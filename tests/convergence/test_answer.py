"""A converge case in the answer: the effective penalty beside the step-time penalty, and the
training verdict that says by how much more steps a device needs (pure, synthetic runs)."""

from __future__ import annotations

import pytest

from harness.analysis.answer import answer
from harness.results import convergence_judge as judge
from harness.results.schema import CaseKey, CaseResult, Convergence
from tests.run_records import record


def converge_case(steps: list[int | None], reference: list[int | None]) -> CaseResult:
    ratio = judge.steps_ratio(steps, reference, 300)
    c = Convergence(
        target_loss=2.5855,
        target_step=100,
        eval_every=10,
        eval_batches=4,
        step_cap=300,
        seeds=[0, 1, 2],
        steps_to_target=steps,
        reference_steps_to_target=reference,
        band=judge.band(reference, [], 10),
        steps_ratio=ratio[0] if ratio else None,
        steps_ratio_ci=ratio[1] if ratio else None,
    )
    c.verdict, c.reasons = judge.judge(c)
    key = CaseKey(
        workload="mlp", workload_version="1", mode="converge", dtype="fp32", batch=8,
        preset="small",
    )  # fmt: skip
    return CaseResult(key=key, status="ok", convergence=c)


def test_slow_convergence_makes_training_not_ready_with_the_steps_ratio() -> None:
    run = record("cpu", "host", extra_cases=[converge_case([260, 270, 250], [100, 100, 90])])
    a = answer([run])
    (row,) = a.convergence
    assert row.result.verdict == "slow"
    assert row.penalty == pytest.approx(1.0, rel=0.05)
    assert row.effective_penalty == pytest.approx(2.6 * row.penalty)
    (mlp,) = [r for r in a.train_infer if r.workload == "mlp"]
    assert mlp.effective_penalty == row.effective_penalty
    training = a.verdicts[0].training
    assert training.status == "not ready"
    assert training.reasons[0].startswith("not training-ready: mlp/fp32/b8 needs 2.60x the steps")


def test_convergence_within_the_band_keeps_the_training_verdict() -> None:
    plain = answer([record("cpu", "host")]).verdicts[0].training
    run = record("cpu", "host", extra_cases=[converge_case([100, 100, 90], [100, 100, 90])])
    a = answer([run])
    assert a.convergence[0].result.verdict == "pass"
    assert a.verdicts[0].training == plain
    assert a.verdicts[0].inference == answer([record("cpu", "host")]).verdicts[0].inference
