"""Phase penalties and where the excess goes (harness.analysis.phases), on constructed cases."""

from __future__ import annotations

import pytest

from harness.analysis.phases import phase_rows
from harness.results.schema import PhaseBreakdown
from tests.run_records import case


def _cases(phases: dict[str, float], step: float, infer: float = 0.010) -> list:
    train = case("mlp", "train", step, flops=6e9)
    train.phases = PhaseBreakdown(
        phases_s=phases,
        step_s=step,
        coverage=sum(phases.values()) / step,
        iterations=10,
        optimizer_bytes=7e8,
        optimizer_bytes_note="AdamW: 7 x 4 B x 25M params",
    )
    return [train, case("mlp", "infer", infer, flops=2e9)]


def test_backward_penalty_optimizer_bandwidth_and_the_excess() -> None:
    phases = {"forward": 0.010, "backward": 0.040, "optimizer": 0.007, "zero_grad": 0.001}
    (row,) = phase_rows("sys", _cases(phases, step=0.060), bandwidth=2e11, bandwidth_source="x")
    assert row.backward_flop_ratio == pytest.approx(2.0)
    assert row.backward_forward == pytest.approx(4.0)
    assert row.backward_penalty == pytest.approx(2.0)
    assert row.optimizer_bandwidth == pytest.approx(1e11)
    assert row.phases_s["other"] == pytest.approx(0.002)
    assert row.coverage == pytest.approx(58 / 60)
    # Expected: forward 10 ms, backward 20 ms; optimizer, zero_grad and the rest are excess.
    assert row.excess_s["backward"] == pytest.approx(0.020, rel=0.05)
    assert row.excess_s["optimizer"] == pytest.approx(0.007)
    assert row.excess_phase == "backward"
    assert "most of the excess goes to backward" in row.sentence


def test_an_optimizer_bound_step_names_the_optimizer_and_its_bandwidth() -> None:
    phases = {"forward": 0.010, "backward": 0.020, "optimizer": 0.028, "zero_grad": 0.001}
    (row,) = phase_rows("sys", _cases(phases, step=0.060), bandwidth=1e11)
    assert row.excess_phase == "optimizer"
    assert "optimizer moves its bytes at 25.0% of the bandwidth probe" in row.sentence


def test_a_step_within_its_flop_share_has_no_excess() -> None:
    phases = {"forward": 0.010, "backward": 0.018, "optimizer": 0.001}
    (row,) = phase_rows("sys", _cases(phases, step=0.029))
    assert "there is no excess to attribute" in row.sentence


def test_train_cases_without_phases_give_no_rows() -> None:
    cases = [case("mlp", "train", 0.03, flops=6e9), case("mlp", "infer", 0.01, flops=2e9)]
    assert phase_rows("sys", cases) == []
