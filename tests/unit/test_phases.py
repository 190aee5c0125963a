"""The phase timer (harness.measurement.phases) and the staged training steps, on the CPU."""

from __future__ import annotations

import pytest
import torch

from backends.cpu import CPUBackend
from harness.measurement import phases
from harness.results.schema import CaseResult
from tests.workloads.helpers import build


def _user_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
    with phases.phase("forward"):
        loss = model(torch.randn(8, 16)).square().mean()
    with phases.phase("backward"):
        loss.backward()
    with phases.phase("optimizer"):
        optimizer.step()
    with phases.phase("optimizer"):  # entered twice in one step: its times add up
        optimizer.zero_grad()


def test_phase_timer_times_a_users_own_training_step() -> None:
    model = torch.nn.Linear(16, 4)
    optimizer = torch.optim.AdamW(model.parameters())
    timer = phases.PhaseTimer(CPUBackend())
    for _ in range(3):
        with timer.step():
            _user_step(model, optimizer)
    result = timer.breakdown()
    assert list(result.phases_s) == ["forward", "backward", "optimizer"]
    assert result.iterations == 3 and result.clock == "host clock"
    assert all(seconds > 0 for seconds in result.phases_s.values())
    # Phases lie inside their step and do not overlap, so they never cover more than it.
    assert 0 < result.coverage <= 1.0
    assert result.other_s >= 0


def test_the_phase_timer_is_part_of_the_public_api() -> None:
    import harness

    assert harness.PhaseTimer is phases.PhaseTimer and harness.phase is phases.phase


def test_phase_outside_a_timed_step_does_nothing() -> None:
    timer = phases.PhaseTimer()
    with phases.phase("forward"):
        pass
    assert timer.iterations == []
    with pytest.raises(ValueError, match="no iteration was timed"):
        timer.breakdown()


def test_a_step_that_raises_records_no_iteration() -> None:
    timer = phases.PhaseTimer()
    with pytest.raises(RuntimeError, match="boom"), timer.step(), phases.phase("forward"):
        raise RuntimeError("boom")
    assert timer.iterations == [] and timer.step_times == []
    with timer.step(), phases.phase("forward"):
        pass
    assert list(timer.iterations[0]) == ["forward"]


@pytest.mark.parametrize("workload", ["mlp", "gpt", "convnet", "dit"])
def test_every_trainable_workload_has_a_staged_train_step(workload: str) -> None:
    instance, _ = build(workload)
    backend = CPUBackend()
    staged = instance.staged_step("train", phases.phase)
    assert staged is not None and instance.staged_step("infer", phases.phase) is None
    result = phases.time_phases(
        staged, backend, warmup_iterations=0, min_iterations=2, max_iterations=2
    )
    assert list(result.phases_s) == ["forward", "backward", "optimizer", "zero_grad"]
    assert result.iterations == 2
    assert instance.last is not None and bool(torch.isfinite(instance.last).all())


def test_instance_phases_times_train_cases_only_and_counts_optimizer_bytes() -> None:
    instance, _ = build("mlp")
    backend = CPUBackend()
    result = phases.instance_phases(instance, "train", backend)
    assert result is not None and result.iterations >= 10
    assert result.optimizer_bytes and result.optimizer_bytes_note
    assert result.unattributed_s is not None and result.other_s >= 0
    assert phases.instance_phases(instance, "infer", backend) is None


def test_optimizer_traffic_counts_adamw_state() -> None:
    instance, _ = build("mlp")
    params = sum(p.numel() for p in instance.model.parameters())  # type: ignore[attr-defined]
    traffic = instance.optimizer_traffic()
    assert traffic is not None
    assert traffic[0] == 7 * 4 * params
    assert traffic[1].startswith("AdamW: reads param, grad, exp_avg, exp_avg_sq")


def test_results_written_before_phases_load_without_them() -> None:
    old = {
        "key": {
            "workload": "mlp",
            "workload_version": "1",
            "mode": "train",
            "dtype": "fp32",
            "batch": 2,
            "preset": "tiny",
        },
        "status": "ok",
    }
    assert CaseResult.model_validate(old).phases is None
