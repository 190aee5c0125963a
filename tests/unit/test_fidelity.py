"""Fidelity checks on the real mlp workload, with test-only backends that misbehave."""

from __future__ import annotations

import math

import pytest
import torch

from backends.cpu import CPUBackend
from harness.errors import BenchError
from harness.fidelity.check import TOLERANCES, check_fidelity, max_scaled_deviation
from workloads.base import WorkloadError


class FlippedGradientsBackend(CPUBackend):
    """A CPU-hosted device whose prepare() corrupts every gradient (sign flipped): training
    climbs the loss instead of descending it."""

    name = "flipped-grads"

    def prepare(self, model: torch.nn.Module) -> torch.nn.Module:
        for parameter in model.parameters():
            parameter.register_hook(lambda grad: -grad)
        return model


class NaNAfterBackend(CPUBackend):
    """A CPU-hosted device whose activations turn NaN from the `after`-th forward call on."""

    name = "nan-after"

    def __init__(self, after: int) -> None:
        super().__init__()
        self.after = after

    def prepare(self, model: torch.nn.Module) -> torch.nn.Module:
        calls = [0]

        def poison(module: torch.nn.Module, args: object, output: torch.Tensor) -> torch.Tensor:
            calls[0] += 1
            return output * float("nan") if calls[0] > self.after else output

        model.register_forward_hook(poison)
        return model


def test_cpu_fp32_against_the_cpu_fp32_reference_passes_bitwise() -> None:
    result = check_fidelity("cpu", "mlp", "fp32", "tiny")
    assert result.verdict == "pass" and result.reasons == []
    assert result.steps == 20 and len(result.target_loss) == len(result.reference_loss) == 20
    assert result.target_loss == result.reference_loss
    assert result.max_rel_loss_deviation == 0.0 and result.final_loss_ratio == 1.0
    assert result.deterministic is True and result.determinism_max_abs_diff == 0.0
    assert result.first_nonfinite_step is None
    assert result.target_loss[-1] < result.target_loss[0]  # it learns


def test_cpu_fp32_against_the_fp64_reference_passes_with_a_tiny_drift() -> None:
    fp64 = check_fidelity("cpu", "mlp", "fp32", "tiny", steps=8, reference="cpu:fp64")
    assert fp64.verdict == "pass", fp64.reasons
    assert 0.0 < fp64.max_rel_loss_deviation < 1e-5  # different arithmetic, same trajectory


def test_bf16_is_judged_against_the_bf16_tolerance_and_passes() -> None:
    result = check_fidelity("cpu", "mlp", "bf16", "tiny", determinism=False)
    assert result.tolerance == TOLERANCES["bf16"]
    assert result.max_rel_loss_deviation > 0.0
    assert result.max_rel_loss_deviation <= TOLERANCES["bf16"].loss_pass
    assert result.verdict == "pass", result.reasons


def test_a_backend_that_corrupts_gradients_fails() -> None:
    result = check_fidelity(FlippedGradientsBackend(), "mlp", "fp32", "tiny", determinism=False)
    assert result.backend == "flipped-grads"
    assert result.verdict == "fail"
    assert any("loss deviation" in r for r in result.reasons)
    assert result.final_loss_ratio > 1.0  # it climbed


def test_activations_turning_nan_fail_at_that_step() -> None:
    result = check_fidelity(NaNAfterBackend(after=5), "mlp", "fp32", "tiny")
    assert result.verdict == "fail"
    assert result.first_nonfinite_step == 5
    assert result.reference_first_nonfinite_step is None
    assert "NaN/Inf at step 5" in result.reasons[0]
    assert len(result.target_loss) == 6 and result.target_loss[-1] is None
    # stored without NaN: JSON round trip keeps the marker
    again = type(result).model_validate_json(result.model_dump_json())
    assert again.target_loss[-1] is None and again.first_nonfinite_step == 5


def test_a_huge_learning_rate_diverges_on_both_and_fails_naming_both_steps() -> None:
    result = check_fidelity(
        "cpu", "mlp", "fp32", "tiny", params={"lr": 1e30}, steps=20, determinism=False
    )
    assert result.verdict == "fail"
    step = result.first_nonfinite_step
    assert step is not None and result.reference_first_nonfinite_step == step
    assert result.reasons[0] == (
        f"training on the target produced NaN/Inf at step {step} "
        f"(the reference too, at step {step})"
    )


def test_unsupported_dtype_is_skipped_with_the_reason() -> None:
    class NoBF16(CPUBackend):
        name = "nobf16"
        supported_dtypes = ("fp32",)

    result = check_fidelity(NoBF16(), "mlp", "bf16", "tiny")
    assert result.verdict == "skipped"
    assert result.reasons == ["backend 'nobf16' does not support bf16"]


def test_bad_inputs_name_the_choices() -> None:
    with pytest.raises(BenchError, match=r"unknown --reference 'gpu:fp8'; choose from: cpu:fp32"):
        check_fidelity("cpu", "mlp", "fp32", "tiny", reference="gpu:fp8")
    with pytest.raises(WorkloadError, match="choose one of: tiny, small, base"):
        check_fidelity("cpu", "mlp", "fp32", "huge")
    with pytest.raises(BenchError, match="unknown dtype 'fp8'; choose from: fp32, bf16, fp16"):
        check_fidelity("cpu", "mlp", "fp8", "tiny")
    with pytest.raises(BenchError, match="fidelity steps must be >= 1"):
        check_fidelity("cpu", "mlp", "fp32", "tiny", steps=0)


def test_scaled_deviation_ignores_nonfinite_markers() -> None:
    assert max_scaled_deviation([1.0, 2.2, None], [1.0, 2.0, 3.0], 4.0) == pytest.approx(0.05)
    assert max_scaled_deviation([], [], 1.0) == 0.0
    assert max_scaled_deviation([1.0], [2.0], None) == 0.0
    assert not math.isnan(max_scaled_deviation([None], [None], 1.0))


def test_a_base_run_plans_fidelity_at_small_and_says_so() -> None:
    from harness.results.config import RunConfig
    from harness.run.fidelity_suite import plan_fidelity

    config = RunConfig(
        workloads=["mlp"], preset="base", dtypes=["fp32", "bf16"], fidelity=True,
        params={"hidden": "32"},
    )  # fmt: skip
    specs = plan_fidelity(config)
    assert [(s.workload, s.dtype, s.preset, s.steps) for s in specs] == [
        ("mlp", "fp32", "small", 100),
        ("mlp", "bf16", "small", 100),
    ]
    assert specs[0].note == "the run's preset is base; fidelity ran at small to keep it bounded"
    assert specs[0].params["hidden"] == 32
    assert plan_fidelity(config.model_copy(update={"fidelity": False})) == []
    tiny = plan_fidelity(config.model_copy(update={"preset": "tiny", "fidelity_steps": 7}))
    assert tiny[0].steps == 7 and tiny[0].note == ""


def test_routing_match_compares_top_k_sets_per_layer_and_token() -> None:
    from harness.fidelity.check import expert_load, routing_match
    from workloads.base import Routing

    # Two layers of two tokens, top-2 of 4 experts; sets sorted, token after token.
    target = Routing(n_expert=4, top_k=2, experts=[[0, 1, 2, 3], [0, 2, 1, 3]])
    reference = Routing(n_expert=4, top_k=2, experts=[[0, 1, 2, 3], [0, 3, 1, 3]])
    assert routing_match(target, reference) == 0.75
    assert routing_match(target, target) == 1.0
    assert expert_load(target) == [2, 2, 2, 2]
    assert expert_load(reference) == [2, 2, 1, 3]


def test_moe_fidelity_records_routing_per_step_and_passes_on_the_cpu() -> None:
    result = check_fidelity("cpu", "moe", "fp32", "tiny", steps=4, determinism=False)
    assert result.verdict == "pass", result.reasons
    assert result.routing_match == [1.0] * 4
    assert result.max_routing_mismatch == 0.0
    n_expert, slots = 8, 2 * 32 * 2  # tiny: 8 experts, batch 2 x 32 tokens, top-2, 1 MoE layer
    assert len(result.target_expert_load) == 4
    assert all(len(load) == n_expert and sum(load) == slots for load in result.target_expert_load)
    assert result.target_expert_load == result.reference_expert_load


def test_dense_workloads_record_no_routing() -> None:
    result = check_fidelity("cpu", "mlp", "fp32", "tiny", steps=2, determinism=False)
    assert result.routing_match == [] and result.max_routing_mismatch is None


def test_a_router_with_reduced_precision_logits_is_flagged_by_routing_before_the_loss(
    test_plugins: dict[str, str],
) -> None:
    """The coarse-router test backend (tests/fixtures/plugins, through the bench.backends
    entry point) rounds router logits to bf16: in fp32 a few tokens tie and pick another
    expert, which the loss and gradient norm do not show within 20 steps."""
    result = check_fidelity("coarse-router", "moe", "fp32", "tiny", determinism=False)
    tolerance = TOLERANCES["fp32"]
    assert result.max_routing_mismatch is not None
    assert result.max_routing_mismatch > (tolerance.routing_pass or 0.0)
    assert result.verdict in ("warn", "fail")
    assert any(r.startswith("routing diverges: in a compared step") for r in result.reasons)
    assert result.max_rel_loss_deviation <= tolerance.loss_pass
    assert result.max_rel_grad_norm_deviation <= tolerance.grad_norm_pass
