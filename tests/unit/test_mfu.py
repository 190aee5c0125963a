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
    ("stored", "status", "mfu"),
    [
        ({"mfu": 0.4}, "reported", 0.4),
        ({"mfu_note": "MFU would be 130% against spec: x, above 100%: ..."}, "above_100", None),
        ({"mfu_note": "no known bf16 peak for this device and ..."}, "no_peak", None),
        ({"mfu": 1.3}, "above_100", None),
        ({}, None, None),
    ],
)
def test_files_without_mfu_status_get_it_from_the_older_fields(
    stored: dict[str, Any], status: str | None, mfu: float | None
) -> None:
    """Schema version 1 files written before `mfu_status` carry only `mfu` and the prose note;
    files older still kept an MFU above 100%, which is dropped on reading."""
    data = case("gpt", 40e9).model_dump(mode="json", exclude={"mfu_status"})
    loaded = CaseResult.model_validate({**data, "mfu": None, "mfu_note": None, **stored})
    assert loaded.mfu_status == status and loaded.mfu == mfu


def test_an_old_run_file_with_only_the_prose_note_loads_with_the_status(tmp_path: Path) -> None:
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
