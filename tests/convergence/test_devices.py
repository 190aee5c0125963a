"""The converge mode against test devices (tests/fixtures/plugins/accelbench_converge_plugins.py)
on mlp tiny: every decision is on steps, events and losses (deterministic on the CPU for a
fixed seed), never on seconds. The reference is trained once per process and shared."""

from __future__ import annotations

import pytest

from tests.convergence.cases import converge

pytestmark = pytest.mark.slow


def test_healthy_device_passes_with_the_reference_steps(test_plugins: dict[str, str]) -> None:
    c = converge("healthy-cpu")
    assert c.verdict == "pass", c.reasons
    assert c.steps_to_target == c.reference_steps_to_target
    assert c.steps_ratio == 1.0
    assert not [e for e in c.events if e.kind != "step_time_drift"]


def test_healthy_device_passes_in_bf16_against_the_honest_run(
    test_plugins: dict[str, str],
) -> None:
    c = converge("healthy-cpu", "bf16")
    assert c.verdict == "pass", c.reasons
    assert c.band is not None and c.band.honest_name == "cpu:bf16"
    assert c.steps_to_target == c.band.honest


def test_a_healthy_soak_is_judged_against_a_reference_as_long(
    test_plugins: dict[str, str],
) -> None:
    """mlp's own train loss jumps past step 20 (by 1.3x its running median near step 57) beyond
    what the reference showed up to the target: the reference seed trains as long as the soak,
    so the healthy device's jumps are within its spread."""
    c = converge("healthy-cpu", target_step=20, soak_steps=60)
    assert c.soak_steps == 60
    assert c.verdict == "pass", c.reasons
    assert not [e for e in c.events if e.kind in ("spike", "grad_outlier")]


def test_gradient_spikes_are_events_at_their_steps(test_plugins: dict[str, str]) -> None:
    c = converge("converge-spike", soak_steps=80)
    outliers = [e.step for e in c.events if e.kind == "grad_outlier"]
    trained = next(curve.steps_trained for curve in c.curves if curve.run == "device")
    assert trained >= 80
    assert outliers == list(range(24, trained, 25))
    assert all(e.value and e.value > 50 for e in c.events if e.kind == "grad_outlier")
    # The spikes also slow training past the cap (3 x 60 steps): not_reached comes first.
    assert c.verdict in ("unstable", "not_reached")
    assert "gradient-norm outlier(s) beyond the reference's spread" in " ".join(c.reasons)


def test_memory_kept_every_step_fails(test_plugins: dict[str, str]) -> None:
    c = converge("converge-leak")
    (event,) = [e for e in c.events if e.kind == "memory_growth"]
    assert event.value is not None and event.value >= 32 * 2**20
    assert c.verdict == "failed"
    assert "memory grew steadily" in c.reasons[0]


def test_weights_without_fp32_master_copy_need_more_steps(test_plugins: dict[str, str]) -> None:
    """Weights rounded to bf16 after every step: at the tiny target step (100) the device needs
    2.6x the reference's steps (260 vs 100) and the verdict says so."""
    c = converge("converge-bf16-weights", target_step=100)
    assert c.verdict in ("slow", "not_reached"), c.reasons
    assert c.steps_ratio is not None and c.steps_ratio >= 2.0
    assert "the reference's steps" in c.reasons[0] or "not reached" in c.reasons[0]
