"""Every trainable workload passes on a healthy device in fp32 and bf16, and in fp16 with the
workload's GradScaler (the issue's "healthy: passes for every workload"); mlp, gpt and llama are
covered by test_devices.py and the repeated checks in docs/convergence.md. The cheapest case
that still trains: one seed, the target at step 10 (one eval interval), one held-out batch per
eval (convnet: 4; on one batch its eval loss does not fall in 10 steps). The CPU in fp32 is the
reference and the CPU in the dtype the honest run, so a healthy device's steps equal theirs."""

from __future__ import annotations

import pytest

from harness.convergence.job import ConvergeSpec, run_converge_case
from harness.convergence.settings import converge_settings
from tests.convergence.cases import case_key, converge

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    ("workload", "dtype"),
    [
        ("moe", "fp32"),
        ("moe", "bf16"),
        ("convnet", "fp32"),
        ("convnet", "bf16"),
        ("dit", "fp32"),
        ("dit", "bf16"),
        ("dit", "fp16"),
    ],
)
def test_healthy_device_passes(test_plugins: dict[str, str], workload: str, dtype: str) -> None:
    batches = 4 if workload == "convnet" else 1
    c = converge("healthy-cpu", dtype, workload=workload, target_step=10, eval_batches=batches)
    assert c.verdict == "pass", c.reasons
    assert not [e for e in c.events if e.kind not in ("step_time_drift", "skipped")]
    assert c.band is not None
    if dtype == "fp32":
        assert c.steps_to_target == c.reference_steps_to_target == [10]
    else:
        assert c.band.honest_name == f"cpu:{dtype}"
        assert c.steps_to_target == c.band.honest


def test_a_target_the_untrained_model_already_meets_is_refused(
    test_plugins: dict[str, str],
) -> None:
    """convnet's eval loss on one held-out batch rises over its first 10 steps (2.37 -> 2.57):
    no target, said in words (not a division by zero)."""
    key, params = case_key("convnet")
    settings = converge_settings("tiny", seeds=1, target_step=10)
    spec = ConvergeSpec(
        backend="healthy-cpu",
        key=key,
        params=params,
        settings=settings.model_copy(update={"eval_batches": 1}),
    )
    case = run_converge_case(spec)
    assert case.status == "failed" and case.error is not None
    assert "the reference's eval loss of convnet did not fall in 10 steps" in case.error.message
