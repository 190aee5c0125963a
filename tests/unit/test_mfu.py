"""Peaks and MFU: spec peaks first, measured peaks only from big enough matmul probes
(sweeps preferred), and never an MFU above 100%."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from backends.registry import get_backend
from harness.analysis.mfu import MIN_PROBE_FLOPS, apply_peaks
from harness.measurement.environment import capture_environment
from harness.results.config import RunConfig
from harness.results.schema import CaseKey, CaseResult, RunRecord
from harness.results.store import load_run


def case(
    workload: str,
    achieved: float,
    flops: float = 1e10,
    dtype: str = "bf16",
    sweep: bool = False,
    largest: float = 1e10,
) -> CaseResult:
    key = CaseKey(
        workload=workload,
        workload_version="1",
        mode="probe" if workload == "matmul" else "train",
        dtype=dtype,
        batch=1,
        preset="small",
        params={"sweep": sweep},
    )
    return CaseResult(
        key=key,
        status="ok",
        flops_per_step=flops,
        achieved_flops=achieved,
        extra={"sweep": float(sweep), "sweep_largest_step_flops": largest}
        if workload == "matmul"
        else {},
    )


def record(cases: list[CaseResult], spec: dict[str, float] | None = None) -> RunRecord:
    device = get_backend("cpu").describe()
    if spec:
        device = device.model_copy(update={"peak_flops": spec, "peak_source": "datasheet"})
    return RunRecord(
        run_id="x",
        started_at=datetime.now(timezone.utc),
        backend="cpu",
        config=RunConfig(),
        environment=capture_environment(),
        device=device,
        cases=cases,
    )


def test_a_tiny_probe_never_becomes_the_peak() -> None:
    tiny_probe = case("matmul", 5e9, flops=2.0 * 128**3)
    model = case("gpt", 40e9)
    run = record([tiny_probe, model])
    apply_peaks(run)
    assert run.peaks == {}
    assert model.mfu is None and model.mfu_status == "no_peak"
    assert model.mfu_note and "no matmul probe of at least" in model.mfu_note


def test_a_sweep_is_preferred_to_a_faster_single_probe() -> None:
    single = case("matmul", 90e9, flops=MIN_PROBE_FLOPS)
    sweep = case("matmul", 80e9, sweep=True)
    model = case("gpt", 40e9)
    run = record([single, sweep, model])
    apply_peaks(run)
    assert run.peaks["bf16"].flops == 80e9
    assert run.peaks["bf16"].source.startswith("measured: matmul sweep")
    assert model.mfu == 0.5 and model.mfu_status == "reported" and model.mfu_note is None


def test_a_sweep_counts_when_it_tried_big_shapes_even_if_a_smaller_one_won() -> None:
    small_winner = case("matmul", 80e9, flops=1e8, sweep=True)
    tiny_sweep = case("matmul", 90e9, flops=1e8, sweep=True, largest=1e8, dtype="fp32")
    run = record([small_winner, tiny_sweep])
    apply_peaks(run)
    assert run.peaks["bf16"].flops == 80e9
    assert "fp32" not in run.peaks


def test_mfu_above_one_is_dropped_with_the_reason() -> None:
    probe = case("matmul", 50e9)
    model = case("gpt", 60e9)
    run = record([probe, model])
    apply_peaks(run)
    assert model.mfu is None and model.mfu_status == "above_100"
    assert model.peak_flops_source and model.peak_flops_source.startswith("measured")
    assert model.mfu_note and "120%" in model.mfu_note and "above 100%" in model.mfu_note
    assert probe.mfu == 1.0


def test_the_spec_peak_wins_over_measured_probes() -> None:
    probe = case("matmul", 50e9)
    model = case("gpt", 25e9, dtype="bf16")
    other = case("gpt", 25e9, dtype="fp32")
    run = record([probe, model, other], spec={"bf16": 100e9})
    apply_peaks(run)
    assert run.peaks["bf16"].source == "spec: datasheet"
    assert model.mfu == 0.25
    assert other.mfu is None and other.mfu_note and "no known fp32 peak" in other.mfu_note


def test_the_summary_table_says_when_mfu_was_dropped() -> None:
    from rich.console import Console

    from harness.cli.tables import summary_table

    probe = case("matmul", 50e9)
    model = case("gpt", 60e9)
    apply_peaks(record([probe, model]))
    console = Console(record=True, width=200)
    console.print(summary_table([probe, model]))
    text = console.export_text()
    assert "dropped (> 100%)" in text and "100.0%" in text


def test_training_uses_the_sustained_peak_and_says_so() -> None:
    probe = case("matmul", 9e11, flops=MIN_PROBE_FLOPS)
    probe.extra.update({"sustained_flops": 6e11, "sustain_s": 30.0, "burst_flops": 9e11})
    train = case("mlp", 3e11)
    infer = case("mlp", 3e11).model_copy(
        update={"key": train.key.model_copy(update={"mode": "infer"})}
    )
    run = record([probe, train, infer], spec={"bf16": 1e12})
    apply_peaks(run)
    assert run.sustained_peaks["bf16"].flops == 6e11
    assert train.mfu == 0.5
    assert train.peak_flops_source == (
        "measured sustained: matmul held 30 s, last window (matmul/probe/bf16/b1/small)"
    )
    assert infer.mfu == 0.3 and infer.peak_flops_source == "spec: datasheet"


def test_a_case_without_flops_has_no_mfu_status() -> None:
    model = case("gpt", 0.0)
    apply_peaks(record([case("matmul", 50e9), model]))
    assert model.mfu is None and model.mfu_status is None and model.mfu_note is None


@pytest.mark.parametrize(
    "stored",
    [
        {"mfu": 0.4},
        {"mfu_note": "MFU would be 130% against spec: x, above 100%: ...", "mfu_status": None},
        {"mfu_note": "no known bf16 peak for this device and ...", "mfu_status": "no_peak"},
        {"mfu": 1.3, "mfu_status": "reported", "peak_flops_source": "spec: an old table"},
        {},
    ],
)
def test_stored_derived_fields_are_never_read(tmp_path: Path, stored: dict[str, Any]) -> None:
    """Whatever an older writer stored as MFU, its status, note or source, reading derives
    them again from the facts (achieved FLOP/s, the probes, the device): no prose is read."""
    probe, model = case("matmul", 50e9), case("gpt", 40e9)
    run = record([probe, model])
    data = json.loads(run.model_dump_json())
    data["cases"][1] = {**data["cases"][1], **stored}
    path = tmp_path / "old.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    loaded = load_run(path).cases[1]
    assert loaded.mfu == pytest.approx(0.8) and loaded.mfu_status == "reported"
    assert loaded.mfu_note is None and loaded.peak_flops_source == "measured: matmul probe " + (
        "(matmul/probe/bf16/b1/small)"
    )


def test_an_old_run_file_without_mfu_status_loads_with_it_derived(tmp_path: Path) -> None:
    probe, model = case("matmul", 50e9), case("gpt", 60e9)
    run = record([probe, model])
    apply_peaks(run)
    data = {**json.loads(run.model_dump_json()), "schema_version": 1}
    for item in data["cases"]:
        del item["mfu_status"]
    path = tmp_path / "old.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    loaded = load_run(path)
    assert [c.mfu_status for c in loaded.cases] == ["reported", "above_100"]
    assert loaded.cases == run.cases


def device_record(
    name: str,
    cases: list[CaseResult],
    stored_peaks: dict[str, float] | None = None,
    downcasts: list[str] | None = None,
    peak_model: str = "",
) -> RunRecord:
    """A run on a device called `name` whose file stored `stored_peaks` as its spec."""
    run = record(cases, spec=stored_peaks)
    run.device = run.device.model_copy(
        update={"name": name, "fp32_downcasts": downcasts, "peak_model": peak_model}
    )
    return run


def write_raw(run: RunRecord, path: Path) -> Path:
    """The file as an older writer left it: the record as is, nothing derived on writing."""
    path.write_text(run.model_dump_json(), encoding="utf-8")
    return path


def test_a_file_written_with_an_older_peak_gets_the_current_tables_mfu(tmp_path: Path) -> None:
    model = case("gpt", 98.9e12)
    old = device_record("NVIDIA H100 80GB HBM3", [model], stored_peaks={"bf16": 500e12})
    apply_peaks(old)
    assert old.cases[0].mfu == pytest.approx(0.1)  # the table, not the stored figure
    old.device = old.device.model_copy(update={"peak_flops": {"bf16": 500e12}})
    old.cases[0].mfu = 98.9e12 / 500e12
    loaded = load_run(write_raw(old, tmp_path / "old.json"))
    assert loaded.device.peak_flops["bf16"] == 989e12
    assert loaded.device.peak_model == "NVIDIA H100 SXM"
    assert loaded.peaks["bf16"].flops == 989e12
    assert loaded.cases[0].mfu == pytest.approx(0.1)
    assert "NVIDIA H100" in (loaded.cases[0].peak_flops_source or "")


def test_a_device_the_table_no_longer_knows_loses_the_tables_old_figures(tmp_path: Path) -> None:
    model = case("gpt", 10e12)
    old = device_record(
        "NVIDIA H100 MIG 1g.10gb-like renamed part",
        [model],
        stored_peaks={"bf16": 989e12},
        peak_model="an entry since removed",
    )
    loaded = load_run(write_raw(old, tmp_path / "old.json"))
    assert loaded.device.peak_flops == {} and loaded.device.peak_model == ""
    assert loaded.cases[0].mfu is None and loaded.cases[0].mfu_status == "no_peak"


def test_a_backends_own_peak_is_kept_when_the_table_does_not_know_the_device(
    tmp_path: Path,
) -> None:
    model = case("gpt", 25e9)
    run = device_record("a vendor plugin's chip", [model], stored_peaks={"bf16": 100e9})
    loaded = load_run(write_raw(run, tmp_path / "run.json"))
    assert loaded.cases[0].mfu == pytest.approx(0.25)
    assert loaded.cases[0].peak_flops_source == "spec: datasheet"


def test_fp32_with_tf32_on_uses_the_tf32_peak_and_says_so() -> None:
    fp32 = case("gpt", 49.5e12, dtype="fp32")
    run = device_record(
        "NVIDIA H100 80GB HBM3", [fp32], downcasts=["torch.backends.cudnn.allow_tf32=True"]
    )
    apply_peaks(run)
    assert fp32.mfu == pytest.approx(0.1) and fp32.mfu_status == "reported"
    source = fp32.peak_flops_source or ""
    assert source.startswith("spec: ") and "tf32 peak: fp32 ran as TF32" in source
    assert "torch.backends.cudnn.allow_tf32=True" in source


def test_fp32_without_downcasts_uses_the_fp32_peak() -> None:
    fp32 = case("gpt", 6.7e12, dtype="fp32")
    apply_peaks(run := device_record("NVIDIA H100 80GB HBM3", [fp32], downcasts=[]))
    assert fp32.mfu == pytest.approx(0.1) and "TF32" not in (fp32.peak_flops_source or "")
    assert run.peaks["fp32"].flops == 67e12


def test_fp32_with_hf32_on_and_no_hf32_figure_uses_the_fp32_probe_that_ran_as_hf32() -> None:
    probe = case("matmul", 100e12, flops=MIN_PROBE_FLOPS, dtype="fp32")
    fp32 = case("gpt", 50e12, dtype="fp32")
    hf32 = ["torch_npu.npu.matmul.allow_hf32=True"]
    apply_peaks(device_record("Ascend910B3", [probe, fp32], downcasts=hf32))
    assert fp32.mfu == pytest.approx(0.5)
    assert "fp32 ran as HF32 (torch_npu.npu.matmul.allow_hf32=True)" in (
        fp32.peak_flops_source or ""
    )


def test_fp32_with_hf32_on_and_no_figure_at_all_says_why_there_is_no_mfu() -> None:
    fp32 = case("gpt", 50e12, dtype="fp32")
    hf32 = ["torch_npu.npu.conv.allow_hf32=True"]
    apply_peaks(device_record("Ascend910B3", [fp32], downcasts=hf32))
    assert fp32.mfu is None and fp32.mfu_status == "no_peak"
    assert "fp32 ran as HF32" in (fp32.mfu_note or "") and "no known hf32 peak" in (
        fp32.mfu_note or ""
    )
