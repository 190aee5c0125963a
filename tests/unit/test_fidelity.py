"""Fidelity checks on the real mlp workload, with test-only backends that misbehave."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch

from backends.cpu import CPUBackend
from harness.errors import BenchError
from harness.fidelity.jobs import check_fidelity
from harness.results.fidelity import BAND_FLOORS, BAND_K, TOLERANCES, WARN_FACTOR
from harness.results.fidelity_judge import loss_deviations, norm_deviations, rejudge
from workloads.base import WorkloadError
from workloads.registry import get_workload


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
    # different arithmetic, same trajectory (the tiny mlp's losses agree to float32 rounding)
    assert fp64.max_rel_loss_deviation < 1e-5
    assert 0.0 < fp64.max_rel_grad_norm_deviation < 1e-5


def test_bf16_is_judged_against_the_band_of_its_honest_run_and_passes() -> None:
    result = check_fidelity("cpu", "mlp", "bf16", "tiny", determinism=False)
    assert result.tolerance == TOLERANCES["bf16"]  # kept as the fallback
    assert result.band is not None and result.band.source == "measured"
    assert result.max_rel_loss_deviation > 0.0
    # the CPU in bf16 is the honest run itself: its deviation is the honest drift
    assert result.max_rel_loss_deviation == result.honest_loss_drift
    assert result.target_loss == result.honest_loss
    floor = BAND_FLOORS["bf16"].loss
    assert result.band.loss_pass[-1] == pytest.approx(BAND_K * result.honest_loss_drift + floor)
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
    # the honest run diverged too: no band can be measured, the fixed table applies
    assert result.band is not None and result.band.source == "table"


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


def test_deviations_are_on_the_loss_own_scale_and_skip_nonfinite_markers() -> None:
    # the loss: x the reference's loss at that step; gradient norms: x the reference's median
    assert loss_deviations([1.1, 2.2, None], [1.0, 2.0, 3.0], 3) == pytest.approx([0.1, 0.1, None])
    assert norm_deviations([1.0, 2.2], [1.0, 2.0], 2) == pytest.approx([0.0, 0.1])
    assert loss_deviations([], [], 2) == [None, None]
    assert loss_deviations([1.0], [0.0], 1) == [None]  # no scale at a zero loss
    # a loss near zero is not a scale: at least LOSS_SCALE_FLOOR (0.1) x the initial loss
    assert loss_deviations([2.0, 0.02], [2.0, 0.01], 2) == pytest.approx([0.0, 0.05])
    assert not any(math.isnan(d or 0.0) for d in loss_deviations([None], [None], 1))


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


FAULTS = ("grads-x1.25", "grads-last-block-zero", "grads-bias")
"""Test plugins (tests/fixtures/plugins) whose prepare() hooks corrupt the backward."""

FAULT_STEPS = 3
"""Enough steps for every fault to leave its band; few enough to keep the test cheap."""


@pytest.mark.parametrize("workload", ["gpt", "mlp", "convnet"])
def test_wrong_backwards_fail_in_every_dtype_and_a_healthy_plugin_passes(
    workload: str, test_plugins: dict[str, str]
) -> None:
    from harness.fidelity.trajectory import train_baseline

    model = get_workload(workload)
    params = model.resolve_params("tiny", {})
    for dtype in ("fp32", "bf16", "fp16"):
        baseline = train_baseline(model, dtype, "tiny", params, 0, FAULT_STEPS, "cpu:fp32")
        for name in ("healthy-cpu", *FAULTS):
            result = check_fidelity(
                name, model, dtype, "tiny", steps=FAULT_STEPS, determinism=False,
                baseline=baseline,
            )  # fmt: skip
            assert result.band is not None and result.band.source == "measured"
            assert result.band.honest == f"cpu:{dtype}" and result.band.k == BAND_K
            assert result.honest_loss_drift is not None
            if name == "healthy-cpu":
                assert result.verdict == "pass", (dtype, result.reasons)
                continue
            assert result.verdict == "fail", (name, dtype, result.reasons)
            assert any(
                re.search(r"deviation [0-9.e-]+ at step \d+ exceeds the \w+ warn band", r)
                and f"x honest cpu:{dtype} drift" in r
                and "+ floor" in r
                for r in result.reasons
            ), (name, dtype, result.reasons)


def test_a_fault_confined_to_attention_is_named(test_plugins: dict[str, str]) -> None:
    result = check_fidelity("attn-grads-x1.25", "gpt", "bf16", "tiny", steps=4, determinism=False)
    assert result.verdict == "fail"
    attention = [r for r in result.reasons if r.startswith("attention gradients")]
    assert len(attention) == 1, result.reasons
    assert attention[0].startswith("attention gradients 25% high from step 0: deviation ")
    assert "exceeds the bf16 warn band" in attention[0]
    assert not any(r.startswith(("mlp gradients", "norms gradients")) for r in result.reasons)
    assert result.max_rel_group_grad_norm_deviation["attention"] > 0.2
    assert result.max_rel_group_grad_norm_deviation["mlp"] < 0.01


def test_fp32_against_the_fp32_reference_has_no_honest_drift_and_uses_the_floor() -> None:
    result = check_fidelity("cpu", "mlp", "fp32", "tiny", steps=4, determinism=False)
    assert result.band is not None and result.band.source == "measured"
    assert result.honest_loss_drift == 0.0 and result.honest_grad_norm_drift == 0.0
    assert result.band.loss_pass == [BAND_FLOORS["fp32"].loss] * 4
    assert result.band.loss_warn == [WARN_FACTOR * BAND_FLOORS["fp32"].loss] * 4


def test_the_table_band_is_the_fallback_and_says_so() -> None:
    result = check_fidelity("cpu", "mlp", "bf16", "tiny", steps=4, determinism=False, band="table")
    assert result.band is not None and result.band.source == "table"
    assert result.band.loss_pass == [TOLERANCES["bf16"].loss_pass] * 4
    assert result.honest_loss == [] and result.honest_loss_drift is None
    assert result.verdict == "pass"


def test_the_honest_run_and_the_reference_are_trained_once_per_run() -> None:
    from harness.fidelity.jobs import FidelitySpec
    from harness.isolation.executor import Executor
    from harness.run.fidelity_suite import BaselineCache

    cache = BaselineCache(Executor("none"), timeout_s=600)
    spec = FidelitySpec(backend="cpu", workload="mlp", dtype="fp32", preset="tiny", steps=3)
    fp32 = cache.baseline(spec)
    bf16 = cache.baseline(spec.model_copy(update={"dtype": "bf16"}))
    again = cache.baseline(spec.model_copy(update={"dtype": "bf16", "backend": "other"}))
    assert fp32 is not None and bf16 is not None and again is not None
    assert cache.trained == 2  # the reference (also fp32's honest run) and cpu:bf16
    assert fp32.honest == fp32.reference and bf16.reference == fp32.reference
    assert again.honest == bf16.honest and bf16.honest_name == "cpu:bf16"
    broken = cache.baseline(spec.model_copy(update={"params": {"hidden": -1}}))
    assert broken is None  # the check then trains (and reports) it itself


def test_per_group_gradient_norms_cover_every_parameter_once() -> None:
    from backends.cpu import CPUBackend
    from workloads.base import BuildContext
    from workloads.training import parameter_groups

    kinds = {"gpt": ["embeddings", "attention", "mlp", "norms"], "mlp": ["mlp", "head"]}
    kinds["convnet"] = ["conv", "norms", "head"]
    for name, expected in kinds.items():
        model = get_workload(name)
        params = model.resolve_params("tiny", {})
        ctx = BuildContext(
            backend=CPUBackend(), dtype_name="fp32", batch_size=params["batch"],
            preset="tiny", params=params,
        )  # fmt: skip
        instance = model.build(ctx)
        groups = parameter_groups(instance.model)  # type: ignore[attr-defined]
        assert list(groups) == expected
        owned = [id(p) for ps in groups.values() for p in ps]
        assert sorted(owned) == sorted({id(p) for p in instance.model.parameters()})  # type: ignore[attr-defined]
        step = instance.fidelity_step(0)
        assert step is not None and list(step.group_grad_norms) == expected
        total = sum(v**2 for v in step.group_grad_norms.values()) ** 0.5
        assert total == pytest.approx(step.grad_norm, rel=1e-5)


def test_the_report_shows_the_band_and_the_honest_drift(
    tmp_path: Path, test_plugins: dict[str, str]
) -> None:
    from harness.report.build import write_report
    from tests.run_records import record

    result = check_fidelity("grads-x1.25", "mlp", "bf16", "tiny", steps=3, determinism=False)
    table = check_fidelity("cpu", "mlp", "bf16", "tiny", steps=3, determinism=False, band="table")
    write_report([record("grads-x1.25", "cpu", checks=[result, table])], tmp_path)
    markdown = (tmp_path / "report.md").read_text()
    assert "pass band at the last compared step (loss / grad norm)" in markdown
    band = result.band
    assert band is not None and result.honest_loss_drift is not None
    assert f"{band.loss_pass[-1]:.3g} / {band.grad_norm_pass[-1]:.3g} (measured, k=4)" in markdown
    assert f"cpu:bf16 {result.honest_loss_drift:.3g} / " in markdown
    assert "0.15 / 0.5 (table)" in markdown
    assert (tmp_path / "figures" / "loss_curves.png").stat().st_size > 0


def test_the_drift_tool_prints_the_honest_drift_per_dtype(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from harness.fidelity.drift import main

    main(["--preset", "tiny", "--workload", "mlp", "--dtype", "fp32,bf16", "--steps", "2"])
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| mlp")]
    assert [row.split(" | ")[3] for row in rows] == ["cpu:fp32", "cpu:bf16"]
    assert rows[0].split(" | ")[4:8] == ["0", "0", "0", "0"]  # the reference itself
    assert "mlp " in rows[1] and "head " in rows[1]


def test_routing_match_compares_top_k_sets_per_layer_and_token() -> None:
    from harness.fidelity.trajectory import expert_load, routing_match
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


def test_a_stored_check_is_judged_again_under_the_current_bands(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from harness.results.fidelity import BandFloor, FidelityResult

    result = check_fidelity("cpu", "mlp", "bf16", "tiny", steps=4, determinism=False)
    stored = FidelityResult.model_validate_json(result.model_dump_json())
    again = rejudge(stored)
    assert again.verdict == result.verdict == "pass"
    assert again.band == result.band and again.reasons == result.reasons
    assert again.max_rel_loss_deviation == result.max_rel_loss_deviation
    # figures stored under another scale are derived again from the trajectories
    stale = stored.model_copy(update={"max_rel_loss_deviation": 99.0, "verdict": "fail"})
    assert rejudge(stale).max_rel_loss_deviation == result.max_rel_loss_deviation
    assert rejudge(stale).verdict == "pass"
    # a narrower floor (and no honest drift allowance) now fails the same trajectories
    monkeypatch.setitem(BAND_FLOORS, "bf16", BandFloor(loss=1e-9, grad_norm=1e-9))
    monkeypatch.setattr("harness.results.fidelity_judge.BAND_K", 0.0)
    narrow = rejudge(stored)
    assert narrow.verdict == "fail" and narrow.band is not None
    assert narrow.band.loss_pass == [1e-9] * 4
    assert stored.verdict == "pass"  # the stored result itself is left as it was
    skipped = stored.model_copy(update={"verdict": "skipped", "reasons": ["why"]})
    assert rejudge(skipped) is skipped


def test_a_gradient_fault_from_step_30_fails_at_small_by_its_final_loss(
    test_plugins: dict[str, str],
) -> None:
    """grads-late-last-eighth zeroes the last eighth of every gradient from step 30: the
    compared window (steps 0-19) is clean, and the final loss, judged against the reference's
    final loss, fails it; a healthy device on the same baseline passes."""
    from harness.fidelity.trajectory import resolved_params, train_baseline

    model = get_workload("mlp")
    params = resolved_params(model, "small", None, None)
    baseline = train_baseline(model, "fp32", "small", params, 0, 100, "cpu:fp32")
    late, healthy = (
        check_fidelity(name, model, "fp32", "small", determinism=False, baseline=baseline)
        for name in ("grads-late-last-eighth", "healthy-cpu")
    )
    assert healthy.verdict == "pass", healthy.reasons
    assert late.steps == 100 and late.max_rel_loss_deviation == 0.0  # the window is clean
    assert late.verdict == "fail"
    assert late.final_loss_deviation is not None and late.band is not None
    assert late.final_loss_deviation > late.band.final_loss_warn  # type: ignore[operator]
    assert len(late.reasons) == 1, late.reasons
    assert late.reasons[0].startswith("the final loss differs by ")
    assert "of the reference's final loss" in late.reasons[0]
