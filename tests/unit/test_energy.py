"""Energy per step through the real meters on stand-in sources: a fake NVML module (pynvml on
sys.path), a fake npu-smi on PATH and a fake powercap (RAPL) tree."""

from __future__ import annotations

import importlib.util
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from backends.ascend import npu_smi_power_meter, parse_npu_smi_power
from backends.base import EnergyReading, NoEnergy
from backends.cpu import CPUBackend
from backends.energy import POWERCAP_ROOT_ENV, CounterMeter, PowerSampler
from backends.nvml import load_nvml, nvml_energy_meter, nvml_settings, nvml_telemetry
from harness.analysis.answer import train_infer_rows
from harness.analysis.device_facts import energy_not_measured
from harness.measurement.energy import case_energy
from harness.results.schema import CaseEnergy, CaseKey
from harness.run.case import CaseSpec
from harness.run.execute import execute_case
from tests.run_records import case
from workloads.registry import get_workload

FAKE_NVML = Path(__file__).resolve().parent.parent / "fixtures" / "fake_nvml"
FAKE_POWER_W = 250.0


@pytest.fixture
def fake_nvml(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The stand-in pynvml importable, NVML's load cache fresh before and after."""
    monkeypatch.syspath_prepend(str(FAKE_NVML))
    monkeypatch.delitem(sys.modules, "pynvml", raising=False)
    load_nvml.cache_clear()
    yield
    sys.modules.pop("pynvml", None)
    load_nvml.cache_clear()


@pytest.mark.usefixtures("fake_nvml", "test_plugins")
def test_nvml_counter_gives_joules_per_step_of_power_times_step_time() -> None:
    params = get_workload("mlp").resolve_params("tiny", {})
    key = CaseKey(
        workload="mlp",
        workload_version="1",
        mode="infer",
        dtype="fp32",
        batch=params["batch"],
        preset="tiny",
        params={k: v for k, v in params.items() if k != "batch"},
    )
    result = execute_case(CaseSpec(backend="nvml-host", key=key, params=params))
    assert result.status == "ok", result.error
    assert result.energy is not None and result.measurement is not None
    assert result.energy.method == "NVML total energy counter"
    expected = FAKE_POWER_W * result.measurement.median
    assert result.energy.joules_per_step == pytest.approx(expected, rel=0.05)
    assert result.energy.average_power_w == pytest.approx(FAKE_POWER_W, rel=0.05)
    items = result.energy.joules_per_step / result.energy.joules_per_item
    assert items == pytest.approx(params["batch"])
    assert result.energy_note is None


@pytest.mark.usefixtures("fake_nvml")
def test_nvml_without_a_counter_integrates_power_samples(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACCELBENCH_FAKE_NVML_NO_COUNTER", "1")
    meter = nvml_energy_meter(0)
    assert isinstance(meter, PowerSampler)
    meter.start()
    time.sleep(0.2)
    reading = meter.stop()
    assert reading.joules is not None
    assert reading.joules / reading.seconds == pytest.approx(FAKE_POWER_W, rel=0.05)
    assert reading.method.startswith("NVML power usage, sampled every")


@pytest.mark.usefixtures("fake_nvml")
def test_nvml_settings_and_telemetry() -> None:
    assert nvml_settings(0) == {
        "nvml.driver_version": "550.54.15",
        "nvml.sm_clock_max_mhz": "1410",
        "nvml.mem_clock_max_mhz": "1593",
        "nvml.power_limit_w": "400",
        "nvml.power_limit_default_w": "400",
    }
    assert nvml_telemetry(0) == {"clock_mhz": 1410.0, "power_w": 250.0, "temperature_c": 61.0}
    assert nvml_settings(3) == {
        "nvml.driver_version": "550.54.15",
        "nvml": "NVML has no device 3",
    }


def test_without_nvidia_ml_py_the_reason_names_the_package(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml raises ImportError
    load_nvml.cache_clear()
    try:
        meter = nvml_energy_meter(0)
    finally:
        load_nvml.cache_clear()
    assert isinstance(meter, NoEnergy)
    assert meter.stop().reason == (
        "nvidia-ml-py is not installed (install nvidia-ml-py (`pip install nvidia-ml-py`) for "
        "NVML readings)"
    )


def _zone(root: Path, name: str, energy_uj: int, max_uj: int) -> Path:
    zone = root / name
    zone.mkdir()
    (zone / "energy_uj").write_text(f"{energy_uj}\n")
    (zone / "max_energy_range_uj").write_text(f"{max_uj}\n")
    return zone


def test_rapl_sums_packages_unwraps_the_counter_and_skips_subzones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package0 = _zone(tmp_path, "intel-rapl:0", 999_000_000, 1_000_000_000)
    package1 = _zone(tmp_path, "intel-rapl:1", 5_000_000, 1_000_000_000)
    core = _zone(tmp_path, "intel-rapl:0:0", 1_000, 1_000_000_000)
    monkeypatch.setenv(POWERCAP_ROOT_ENV, str(tmp_path))
    meter = CPUBackend().energy_meter()
    meter.start()
    (package0 / "energy_uj").write_text("1000000\n")  # wrapped: 1 J before + 1 J after
    (package1 / "energy_uj").write_text("8000000\n")  # 3 J
    (core / "energy_uj").write_text("900000000\n")  # a subzone: already in its package
    reading = meter.stop()
    assert reading.joules == pytest.approx(5.0)
    assert reading.method == "RAPL package energy counters (intel-rapl:0, intel-rapl:1)"


def test_rapl_missing_or_unreadable_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(POWERCAP_ROOT_ENV, str(tmp_path / "absent"))
    reason = CPUBackend().energy_meter().stop().reason
    assert (
        reason == f"no RAPL energy counter: {tmp_path / 'absent'} does not exist (not exposed here)"
    )
    (tmp_path / "intel-rapl:0").mkdir()  # a zone without energy_uj
    monkeypatch.setenv(POWERCAP_ROOT_ENV, str(tmp_path))
    reason = CPUBackend().energy_meter().stop().reason
    assert reason.startswith(f"no readable RAPL energy counter under {tmp_path}")


def test_a_counter_that_fails_or_goes_backwards_gives_the_reason() -> None:
    values = iter([10.0, 4.0])
    meter = CounterMeter(lambda: next(values), method="test counter")
    meter.start()
    assert meter.stop().reason == "test counter went backwards (10 J -> 4 J)"

    def broken() -> float:
        raise OSError("read error")

    meter = CounterMeter(broken, method="test counter")
    meter.start()
    reading = meter.stop()
    assert reading.joules is None
    assert reading.reason == "test counter failed: OSError: read error"


FAKE_NPU_SMI = """#!/bin/sh
if [ "$1 $2 $3" = "info -t power" ]; then
  printf '        NPU ID                         : %s\\n' "$5"
  printf '        Power Dissipation(W)           : 93.5\\n'
  exit 0
fi
echo "unknown command" >&2
exit 2
"""


def test_npu_smi_power_is_sampled_and_integrated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = tmp_path / "npu-smi"
    script.write_text(FAKE_NPU_SMI)
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    meter = npu_smi_power_meter(["-i", "0", "-c", "0"])
    assert isinstance(meter, PowerSampler)
    meter.start()
    time.sleep(0.5)
    reading = meter.stop()
    assert reading.joules is not None
    assert reading.joules / reading.seconds == pytest.approx(93.5, rel=0.05)
    assert reading.method.startswith("npu-smi power")


def test_npu_smi_missing_or_without_power_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    reason = npu_smi_power_meter(["-i", "0", "-c", "0"]).stop().reason
    assert reason == "npu-smi gives no power reading: FileNotFoundError: npu-smi is not on PATH"
    assert parse_npu_smi_power("Real-time Power(W) : 88") == 88.0
    with pytest.raises(ValueError, match="no power reading in npu-smi output"):
        parse_npu_smi_power("NPU ID : 0\nHealth : OK")


def test_case_energy_figures_and_the_reason_when_there_are_none() -> None:
    energy, note = case_energy(
        EnergyReading(joules=50.0, seconds=2.0, method="m"), 0.01, 4.0, "tokens"
    )
    assert note is None and energy is not None
    assert (energy.average_power_w, energy.joules_per_step) == (25.0, 0.25)
    assert energy.joules_per_item == 0.0625 and energy.item_unit == "tokens"
    assert case_energy(EnergyReading(reason="no source"), 0.01, 4.0, "tokens") == (
        None,
        "no source",
    )


def test_energy_penalty_and_items_per_joule_in_the_answer() -> None:
    infer = case("gpt", "infer", 0.02, flops=4e9, items=1024, unit="tokens", seed=1)
    train = case("gpt", "train", 0.06, flops=12e9, items=1024, unit="tokens", seed=2)
    infer.energy = CaseEnergy(
        joules=10, seconds=1, average_power_w=10, joules_per_step=2.0, joules_per_item=2 / 1024
    )
    train.energy = CaseEnergy(
        joules=10, seconds=1, average_power_w=10, joules_per_step=9.0, joules_per_item=9 / 1024
    )
    (row,) = train_infer_rows("sys", [infer, train])
    assert row.energy_penalty == pytest.approx((9.0 / 2.0) / 3.0)
    assert row.items_per_joule_infer == pytest.approx(512.0)
    infer.energy, infer.energy_note = None, "no RAPL energy counter"
    train.energy, train.energy_note = None, "no RAPL energy counter"
    (row,) = train_infer_rows("sys", [infer, train])
    assert row.energy_penalty is None
    assert energy_not_measured([infer, train]) == ["energy: not measured (no RAPL energy counter)"]


@pytest.mark.gpu
@pytest.mark.skipif(
    not torch.cuda.is_available() or importlib.util.find_spec("pynvml") is None,
    reason="needs a CUDA GPU and nvidia-ml-py (NVML) for a real energy counter",
)
def test_real_gpu_energy_settings_and_telemetry() -> None:
    from backends.cuda import CUDABackend

    backend = CUDABackend()
    found = backend.settings()
    assert "version.cuda" in found and "nvml.driver_version" in found
    assert set(backend.telemetry()) >= {"clock_mhz", "power_w"}
    a = torch.randn(4096, 4096, device="cuda")
    meter = backend.energy_meter()
    meter.start()
    for _ in range(50):
        a @ a
    backend.synchronize()
    reading = meter.stop()
    assert reading.joules is not None and reading.joules > 0, reading.reason
