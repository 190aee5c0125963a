"""`bench run` and `bench compare` end to end on a stand-in device: the nvml-host test plugin
reports settings, energy and telemetry through the CUDA backend's own code, with a fake NVML
module (tests/fixtures/fake_nvml) on the path for the first run and none for the second."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import PLUGINS, invoke_bench, pythonpath, run_bench

FAKE_NVML = Path(__file__).resolve().parent.parent / "fixtures" / "fake_nvml"
FAKE_POWER_W = 250.0


def _record(folder: Path) -> dict:  # type: ignore[type-arg]
    (path,) = folder.glob("*.json")
    return json.loads(path.read_text())  # type: ignore[no-any-return]


@pytest.mark.slow
def test_settings_energy_and_sustained_peak_through_bench_run_and_compare(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = run_bench(
        "run", "--backend", "nvml-host", "--workload", "matmul,mlp", "--mode", "probe,train",
        "--preset", "tiny", "--param", "matmul.n=1024", "--param", "matmul.sustain_s=0.3",
        "--isolate", "none", "--out", str(tmp_path / "a"),
        env={"PYTHONPATH": pythonpath(FAKE_NVML, PLUGINS), "OMP_NUM_THREADS": "1",
             "ACCELBENCH_FAKE_NVML_POWER_W": str(FAKE_POWER_W)},
    )  # fmt: skip
    assert first.returncode == 0, first.stdout + first.stderr
    out = first.stdout
    assert "matmul/probe/fp32/b1/tiny: burst " in out and " (ratio " in out
    assert "clock 1410 -> 1410 MHz, power 250 -> 250 W, temperature 61 -> 61 C" in out
    assert "training MFU (fp32) uses the sustained peak" in out
    assert "(250 W)" in out and "energy: not measured" not in out
    record = _record(tmp_path / "a")
    assert record["device"]["settings"]["cuda.matmul.allow_tf32"] == "False"
    assert record["device"]["settings"]["nvml.power_limit_w"] == "400"
    assert record["device"]["settings"]["$OMP_NUM_THREADS"] == "1"
    for case in record["cases"]:
        energy, median = case["energy"], case["measurement"]["median"]
        assert energy["method"] == "NVML total energy counter"
        assert energy["joules_per_step"] == pytest.approx(FAKE_POWER_W * median, rel=0.05)
    train = next(c for c in record["cases"] if c["key"]["mode"] == "train")
    assert train["peak_flops_source"].startswith("measured sustained: matmul held")

    second = run_bench(
        "run", "--backend", "nvml-host", "--workload", "matmul", "--preset", "tiny",
        "--isolate", "none", "--out", str(tmp_path / "b"),
        env={"PYTHONPATH": pythonpath(PLUGINS), "OMP_NUM_THREADS": "2",
             "ACCELBENCH_TEST_ALLOW_TF32": "1"},
    )  # fmt: skip
    assert second.returncode == 0, second.stdout + second.stderr
    assert second.stdout.count("energy: not measured (") == 1, second.stdout

    compared = invoke_bench(capsys, "compare", str(tmp_path / "a"), str(tmp_path / "b"))
    assert compared.returncode == 0, compared.stdout + compared.stderr
    assert "$OMP_NUM_THREADS: 1 -> 2" in compared.stdout
    assert "setting cuda.matmul.allow_tf32: False -> True" in compared.stdout
    assert "setting torch.num_threads: 1 -> 2" in compared.stdout
