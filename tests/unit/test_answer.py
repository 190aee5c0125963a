"""The numbers of the answer on synthetic runs with known timings."""

from __future__ import annotations

import pytest

from harness.analysis.answer import PENALTY_NOT_READY, answer
from harness.analysis.mfu import apply_peaks
from harness.stats import bootstrap_median_ratio_ci
from tests.run_records import case, failed_case, fidelity, record


def test_penalty_is_the_time_ratio_over_the_flops_ratio_with_a_ci_around_it() -> None:
    a = answer([record("npu", "Ascend 910B", train_slowdown=2.5)])
    rows = {r.workload: r for r in a.train_infer}
    assert set(rows) == {"mlp", "convnet", "gpt"}
    mlp = rows["mlp"]
    assert mlp.time_ratio == pytest.approx(mlp.t_train_s / mlp.t_infer_s)
    assert mlp.flops_ratio == pytest.approx(3.0)
    assert mlp.penalty == pytest.approx(mlp.time_ratio / 3.0)
    assert mlp.penalty == pytest.approx(2.5, rel=0.02)
    low, high = mlp.penalty_ci
    assert low <= mlp.penalty <= high and high - low < 0.2
    assert mlp.memory_train_bytes == 150 << 20 and mlp.memory_infer_bytes == 50 << 20


def test_ratio_ci_contains_the_ratio_of_medians() -> None:
    low, high = bootstrap_median_ratio_ci([2.0, 2.1, 1.9, 2.05, 1.95], [1.0, 1.02, 0.98, 1.01])
    assert low <= 2.0 / 1.005 <= high
    assert bootstrap_median_ratio_ci([2.0], [1.0]) == (2.0, 2.0)


def test_mfu_per_mode_uses_the_measured_matmul_peak() -> None:
    a = answer([record("cpu", "Xeon")])
    modes = {(r.workload, r.mode) for r in a.modes}
    assert {("gpt", "prefill"), ("gpt", "decode"), ("mlp", "train")} <= modes
    assert ("matmul", "probe") not in modes
    mlp_infer = next(r for r in a.modes if r.workload == "mlp" and r.mode == "infer")
    assert mlp_infer.mfu == pytest.approx(mlp_infer.achieved_flops / a.roofs[0].peak_flops["fp32"])
    assert "measured: matmul" in (mlp_infer.peak_source or "")


def test_roofline_uses_best_probes_and_places_prefill_above_decode_in_intensity() -> None:
    a = answer([record("cpu", "Xeon")])
    (roof,) = a.roofs
    assert roof.peak_flops["fp32"] == pytest.approx(4e9 / 0.01, rel=0.02)
    assert roof.bandwidth == pytest.approx(3e7 / 0.001, rel=0.02)  # triad beat copy
    points = {p.mode: p for p in a.roofline}
    assert points["prefill"].intensity > 10 * points["decode"].intensity


def test_a_healthy_system_is_ready_for_both() -> None:
    (v,) = answer([record("cpu", "Xeon")]).verdicts
    assert v.inference.status == "ready" and v.training.status == "ready"
    assert "1 fidelity check(s) passed" in v.training.reasons[0]


def test_training_is_not_ready_for_crashes_fidelity_failures_and_a_large_penalty() -> None:
    run = record(
        "npu",
        "Ascend 910B",
        train_slowdown=PENALTY_NOT_READY + 1,
        checks=[fidelity("mlp", "npu", "fail", nan_at=7)],
        extra_cases=[
            failed_case("mlp", "train", "crash", "the worker process killed by SIGSEGV"),
            failed_case("mlp", "infer", "unsupported", "no bf16"),
        ],
    )
    (v,) = answer([run]).verdicts
    assert v.inference.status == "caveats"
    assert v.inference.reasons == ["unsupported dtype(s) for inference: bf16"]
    assert v.training.status == "not ready"
    text = " ".join(v.training.reasons)
    assert "mlp/train/bf16/b8/small failed (crash): the worker process killed by SIGSEGV" in text
    assert "fidelity fail for mlp/fp32/small vs cpu:fp32" in text
    assert "training penalty 5.0" in text and "is above 4" in text


def test_missing_fidelity_or_a_warning_gives_caveats() -> None:
    (v,) = answer([record("cpu", "Xeon", checks=[])]).verdicts
    assert v.training.status == "caveats"
    assert "training fidelity was not checked" in v.training.reasons[0]
    (w,) = answer([record("cpu", "Xeon", checks=[fidelity("mlp", "cpu", "warn")])]).verdicts
    assert w.training.status == "caveats" and "fidelity warn" in w.training.reasons[0]


def test_systems_are_grouped_by_backend_and_device_and_latest_case_wins() -> None:
    old = record("cpu", "Xeon", label="old", train_slowdown=3.0)
    new = record("cpu", "Xeon", label="new", offset_s=600)
    other = record("npu", "Ascend", offset_s=60)
    a = answer([new, other, old])
    assert [s.id for s in a.systems] == ["cpu / Xeon", "npu / Ascend"]
    assert a.systems[0].labels == ["old", "new"]
    mlp = next(r for r in a.train_infer if r.system == "cpu / Xeon" and r.workload == "mlp")
    assert mlp.penalty == pytest.approx(1.0, rel=0.02)


def test_mfu_above_100_percent_is_called_out() -> None:
    run = record("cpu", "Xeon")
    run.cases = [c for c in run.cases if c.key.workload != "matmul"]
    run.cases.append(case("matmul", "probe", 100.0, flops=4e9, items=4e9, unit="FLOP"))
    apply_peaks(run)
    a = answer([run])
    assert any("exceed 100% MFU" in n and "underestimates" in n for n in a.notes)
    assert not answer([record("cpu", "Xeon")]).notes


def test_the_roof_uses_the_mfu_peak_rule_so_mfu_and_roof_agree() -> None:
    """A matmul probe too small to approach the device's maximum never becomes the roof,
    however fast; the device's spec peak wins over measured probes."""
    tiny = case("matmul", "probe", 0.0001, dtype="fp16", flops=2e6, items=2e6, unit="FLOP")
    run = record("cpu", "Xeon", extra_cases=[tiny])
    run.device = run.device.model_copy(update={"peak_flops": {"bf16": 1e12}, "peak_source": "x"})
    apply_peaks(run)
    (roof,) = answer([run]).roofs
    assert "fp16" not in roof.peak_flops
    assert roof.peak_flops["bf16"] == 1e12 and roof.flops_source["bf16"] == "spec: x"
    assert roof.peak_flops["fp32"] == run.peaks["fp32"].flops
    assert roof.flops_source["fp32"] == run.peaks["fp32"].source


def test_cases_over_100_percent_mfu_are_noted_from_the_typed_status() -> None:
    run = record("cpu", "Xeon")
    fast = case("mlp", "infer", 0.001, dtype="bf16", flops=4e9, batch=2)
    run.cases.append(fast)
    apply_peaks(run)
    assert fast.mfu_status == "above_100"
    (note,) = [n for n in answer([run]).notes if "exceed 100% MFU" in n]
    assert note.startswith("cpu / Xeon: 1 case(s)")


def test_train_and_infer_pair_only_within_one_workload_version() -> None:
    """The latest run's infer case is a new workload version: it replaces the old infer case
    and does not pair with the old version's train case."""
    old = record("cpu", "Xeon")
    new = record("cpu", "Xeon", offset_s=60)
    new.cases = [c for c in new.cases if (c.key.workload, c.key.mode) == ("mlp", "infer")]
    new.cases[0].key = new.cases[0].key.model_copy(update={"workload_version": "2"})
    a = answer([old, new])
    assert "mlp" not in {r.workload for r in a.train_infer}
    assert {"convnet", "gpt"} <= {r.workload for r in a.train_infer}
    infers = [r for r in a.modes if (r.workload, r.mode) == ("mlp", "infer")]
    assert len(infers) == 1
