"""AscendBackend on a stand-in `torch_npu` (test-only, injected in sys.modules) that mirrors
the real module's API, so the backend's own code path runs without an NPU; the real-device
test is skipped unless torch_npu and an NPU are present.

Like the real torch_npu, the stand-in renames torch's PrivateUse1 device to "npu". That
rename is process-wide and cannot be undone (afterwards torch.accelerator believes a PrivateUse1
accelerator exists, which breaks optimizers and GradScaler in every later test), so this module
runs in its own interpreter: tests/unit/test_ascend_isolated.py starts it there.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from backends.accelerator import EventTimer
from backends.ascend import AscendBackend
from backends.peaks import TERA
from harness.measurement.profile import profile_step
from tests.unit import fake_torch_npu_profiler as fake_profiler

REAL_NPU = importlib.util.find_spec("torch_npu") is not None
OWN_INTERPRETER = "ACCELBENCH_ASCEND_STANDIN"
"""Set by test_ascend_isolated.py in the interpreter it starts for this module."""

pytestmark = pytest.mark.skipif(
    os.environ.get(OWN_INTERPRETER) != "1",
    reason="runs in its own interpreter (test_ascend_isolated.py): the stand-in's PrivateUse1 "
    "rename is process-wide",
)


class FakeNPU(types.ModuleType):
    """The parts of torch.npu that AscendBackend uses, recording what was called."""

    def __init__(self, *, devices: int = 2, bf16: bool = True, name: str = "Ascend910A") -> None:
        super().__init__("torch.npu")
        self.devices, self.bf16, self.name = devices, bf16, name
        self.calls: list[tuple[str, Any]] = []
        self.clock = 0.0
        fake = self

        class Event:
            def __init__(self, enable_timing: bool = False) -> None:
                self.at = 0.0

            def record(self, stream: object = None) -> None:
                fake.clock += 0.004  # each recorded interval: 4 ms of "device" time
                self.at = fake.clock

            def elapsed_time(self, end: Event) -> float:
                return (end.at - self.at) * 1e3

        self.Event = Event
        self.utils = types.SimpleNamespace(get_cann_version=self.get_cann_version)
        self.matmul = types.SimpleNamespace(allow_hf32=False)
        self.conv = types.SimpleNamespace(allow_hf32=True)
        self.jit_compile = False

    def is_jit_compile_false(self) -> bool:
        return not self.jit_compile

    def is_available(self) -> bool:
        return self.devices > 0

    def device_count(self) -> int:
        return self.devices

    def set_device(self, index: int) -> None:
        self.calls.append(("set_device", index))

    def synchronize(self, device: int | None = None) -> None:
        self.calls.append(("synchronize", device))

    def reset_peak_memory_stats(self, device: int | None = None) -> None:
        self.calls.append(("reset_peak_memory_stats", device))

    def max_memory_allocated(self, device: int | None = None) -> int:
        return 123 * 2**20

    def get_device_name(self, device: int | None = None) -> str:
        return self.name

    def get_device_properties(self, device: int | None = None) -> Any:
        return types.SimpleNamespace(name=self.name, total_memory=32 * 2**30)

    def is_bf16_supported(self) -> bool:
        return self.bf16

    def get_amp_supported_dtype(self) -> list[torch.dtype]:
        return [torch.float16, torch.bfloat16]

    def _is_in_bad_fork(self) -> bool:
        return False

    def manual_seed_all(self, seed: int) -> None:
        self.calls.append(("manual_seed_all", seed))

    @staticmethod
    def get_cann_version(module: str = "CANN") -> str:
        return {"CANN": "8.0.RC3", "DRIVER": "24.1.rc3"}[module]


def install_stand_in(
    monkeypatch: pytest.MonkeyPatch, npu: FakeNPU, version: str = "", profiler: bool = True
) -> None:
    """What `import torch_npu` does, for this test: register torch.npu and the 'npu' name,
    and (unless `profiler` is False) torch_npu.profiler (tests/unit/fake_torch_npu_profiler)."""
    if torch._C._get_privateuse1_backend_name() != "npu":
        torch.utils.rename_privateuse1_backend("npu")
    torch_npu = types.ModuleType("torch_npu")
    torch_npu.__version__ = version or f"{torch.__version__.split('+')[0]}.post1"  # type: ignore[attr-defined]
    torch_npu.npu = npu  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "torch_npu", torch_npu)
    monkeypatch.setattr(torch, "npu", npu, raising=False)
    if profiler:
        torch_npu.profiler = fake_profiler  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, "torch_npu.profiler", fake_profiler)
    else:
        monkeypatch.delitem(sys.modules, "torch_npu.profiler", raising=False)


@pytest.fixture
def npu(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeNPU]:
    fake = FakeNPU()
    install_stand_in(monkeypatch, fake)
    yield fake


@pytest.mark.skipif(REAL_NPU, reason="torch_npu is installed here")
def test_missing_torch_npu_says_so_with_the_install_hint() -> None:
    availability = AscendBackend.availability()
    assert not availability.ok
    assert availability.reason == "torch_npu is not installed."
    assert f"torch-npu=={torch.__version__.split('+')[0]}" in availability.hint


def test_missing_cann_libraries_give_the_exact_error_and_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "torch_npu"
    package.mkdir()
    error = "libhccl.so: cannot open shared object file: No such file or directory"
    (package / "__init__.py").write_text(f"raise ImportError({error!r})\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "torch_npu", raising=False)
    availability = AscendBackend.availability()
    assert not availability.ok
    assert availability.reason == f"torch_npu failed to import: ImportError: {error}"
    assert "source /usr/local/Ascend/ascend-toolkit/set_env.sh" in availability.hint
    assert "TORCH_DEVICE_BACKEND_AUTOLOAD=0" in availability.hint


def test_torch_npu_for_another_torch_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    install_stand_in(monkeypatch, FakeNPU(), version="1.11.0.post4")
    availability = AscendBackend.availability()
    assert not availability.ok
    assert f"torch_npu 1.11.0.post4 does not match torch {torch.__version__}" in availability.reason


def test_no_visible_npu_is_explained(monkeypatch: pytest.MonkeyPatch) -> None:
    install_stand_in(monkeypatch, FakeNPU(devices=0))
    availability = AscendBackend.availability()
    assert not availability.ok
    assert "torch_npu loaded but sees no NPU" in availability.reason


def test_generic_path_drives_torch_npu(npu: FakeNPU) -> None:
    assert AscendBackend.availability().ok
    backend = AscendBackend(1)
    assert backend.device() == torch.device("npu", 1)
    assert backend.dist_backend == "hccl"

    backend.synchronize()
    backend.reset_peak_memory()
    assert backend.peak_memory_bytes() == 123 * 2**20
    backend.seed(7)
    assert npu.calls == [
        ("set_device", 1),
        ("synchronize", 1),
        ("reset_peak_memory_stats", 1),
        ("manual_seed_all", 7),  # from torch.manual_seed, as for any PrivateUse1 device
        ("manual_seed_all", 7),  # from AcceleratorBackend.seed
    ]
    timer = backend.timer()
    assert isinstance(timer, EventTimer)
    assert timer.time_block(lambda: None, 3) == pytest.approx(0.004)  # one event pair


def test_autocast_runs_on_the_npu_device_type(npu: FakeNPU) -> None:
    backend = AscendBackend()
    for dtype in (torch.bfloat16, torch.float16):
        with backend.autocast(dtype):
            assert torch.is_autocast_enabled("npu")
            assert torch.get_autocast_dtype("npu") == dtype
    assert not torch.is_autocast_enabled("npu")


def test_bf16_follows_the_chip(monkeypatch: pytest.MonkeyPatch) -> None:
    install_stand_in(monkeypatch, FakeNPU(bf16=False))
    backend = AscendBackend()
    assert not backend.supports(torch.bfloat16)
    assert backend.supports(torch.float16)


def test_describe_reports_name_memory_versions_and_known_peaks(npu: FakeNPU) -> None:
    info = AscendBackend().describe()
    assert (info.backend, info.device_type, info.name, info.count) == (
        "npu",
        "npu",
        "Ascend910A",
        2,
    )
    assert info.memory_bytes == 32 * 2**30
    assert info.runtime["cann"] == "8.0.RC3"
    assert info.runtime["driver"] == "24.1.rc3"
    assert info.runtime["torch_npu"].endswith(".post1")
    assert info.peak_flops == {"fp16": 256 * TERA}
    assert "Huawei" in info.peak_source


def test_910b3_peak_comes_with_its_source(monkeypatch: pytest.MonkeyPatch) -> None:
    install_stand_in(monkeypatch, FakeNPU(name="Ascend910B3"))
    info = AscendBackend().describe()
    assert info.peak_flops == {"bf16": 294.91 * TERA, "fp16": 294.91 * TERA}
    assert "torchtitan-npu" in info.peak_sources["bf16"]


def _training_step() -> Any:
    """A tiny training step on host tensors: two linear layers, SGD without foreach."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, foreach=False)
    x, y = torch.randn(8, 16), torch.randn(8, 4)

    def step() -> None:
        optimizer.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        optimizer.step()

    return step


def test_npu_profile_ranks_npu_time_from_torch_npus_own_profiler(
    npu: FakeNPU, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fake_profiler.STATE, "analysed", [])
    trace = tmp_path / "traces" / "case.json"
    profile = profile_step(_training_step(), AscendBackend(), iterations=2, trace_path=trace)
    assert (profile.activities, profile.time_kind) == (["CPU", "NPU"], "device")
    assert profile.note == ""
    # the stand-in's kernels: 400 us per addmm (two per step, forward), 300 us per mm (three
    # per step, the two layers' backward: grad input of the second, grad weight of both)
    ranked = [(op.name, op.phase, op.forward_op, op.calls) for op in profile.ops[:2]]
    assert ranked == [("aten::mm", "backward", "addmm", 3), ("aten::addmm", "forward", "addmm", 2)]
    assert [op.seconds for op in profile.ops[:2]] == [pytest.approx(900e-6), pytest.approx(800e-6)]
    assert {"forward", "backward", "optimizer"} <= {op.phase for op in profile.ops}
    assert sum(op.share for op in profile.ops) == pytest.approx(1.0)
    # one parse, after the recorded steps, in a folder that is removed; the trace is kept
    (output,) = fake_profiler.STATE.analysed
    assert output.name == "ASCEND_PROFILER_OUTPUT" and output.parent.name.endswith("_ascend_pt")
    assert not output.exists()
    assert trace.is_file()


def test_npu_profile_without_npu_rows_says_it_ranks_host_time(
    npu: FakeNPU, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fake_profiler.STATE, "device_kernels", False)
    profile = profile_step(_training_step(), AscendBackend(), iterations=1)
    assert profile.activities == ["CPU", "NPU"]
    assert profile.time_kind == "self cpu" and profile.ops
    assert "torch_npu's profiler saw no NPU kernels" in profile.note
    assert "ranked by host self time" in profile.note


def test_npu_profile_without_torch_npu_profiler_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    install_stand_in(monkeypatch, FakeNPU(), profiler=False)
    profile = profile_step(_training_step(), AscendBackend(), iterations=1)
    assert profile.time_kind == "self cpu"
    assert profile.note.startswith("torch_npu.profiler is unavailable (")
    assert "ranked by host self time" in profile.note


FAKE_NPU_SMI = """#!/bin/sh
case "$1 $2 $3" in
  "info -t board") printf 'NPU ID : %s\\nFirmware Version : 7.5.0.1.129\\n' "$5" ;;
  "info -t power") printf 'NPU ID : %s\\nPower Dissipation(W) : 90.5\\n' "$5" ;;
  *) exit 2 ;;
esac
"""


def test_settings_name_hf32_compile_mode_environment_versions_and_firmware(
    npu: FakeNPU, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = tmp_path / "npu-smi"
    script.write_text(FAKE_NPU_SMI)
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    monkeypatch.setenv("INF_NAN_MODE_ENABLE", "1")
    monkeypatch.setenv("HCCL_EXEC_TIMEOUT", "1800")
    monkeypatch.setenv("TASK_QUEUE_ENABLE", "2")
    backend = AscendBackend()
    found = backend.settings()
    assert found["npu.matmul.allow_hf32"] == "False"
    assert found["npu.conv.allow_hf32"] == "True"
    assert found["npu.op_compile_mode"] == "binary"
    assert found["npu.soc"] == "Ascend910A"
    assert found["npu.firmware"] == "7.5.0.1.129"
    assert (found["version.cann"], found["version.driver"]) == ("8.0.RC3", "24.1.rc3")
    assert found["$INF_NAN_MODE_ENABLE"] == "1" and found["$HCCL_EXEC_TIMEOUT"] == "1800"
    assert found["$TASK_QUEUE_ENABLE"] == "2"
    assert backend.fp32_downcasts() == ["torch_npu.npu.conv.allow_hf32=True"]
    assert backend.telemetry() == {"power_w": 90.5}
    meter = backend.energy_meter()
    meter.start()
    reading = meter.stop()
    assert reading.method.startswith("npu-smi power") and reading.joules is not None


def test_compare_names_a_changed_allow_hf32(npu: FakeNPU) -> None:
    from harness.analysis.compare import environment_differences
    from harness.run.session import describe_with_settings
    from tests.run_records import record

    base, new = record("npu", "Ascend910A"), record("npu", "Ascend910A")
    base.device = describe_with_settings(AscendBackend())
    npu.matmul.allow_hf32 = True
    npu.jit_compile = True
    new.device = describe_with_settings(AscendBackend())
    assert environment_differences(base, new) == [
        "setting npu.matmul.allow_hf32: False -> True",
        "setting npu.op_compile_mode: binary -> jit",
    ]


@pytest.mark.npu
@pytest.mark.skipif(not REAL_NPU, reason="needs a real Ascend NPU with torch_npu and CANN")
def test_real_npu_conforms() -> None:
    from harness.conformance import run_kit

    if not AscendBackend.availability().ok:
        pytest.skip(f"npu unavailable: {AscendBackend.availability().explain()}")
    report = run_kit("npu")
    assert report.passed, [r for r in report.results if r.status == "fail"]


MULTI_CHIP_NPU_SMI = """#!/bin/sh
echo "$@" >> "$NPU_SMI_LOG"
case "$1 $2 $3" in
  "info -m ")
    printf '        NPU ID   Chip ID   Chip Logic ID   Chip Name\\n'
    printf '        4        0         4               Ascend 910B3\\n'
    printf '        4        1         -               Mcu\\n'
    printf '        5        0         5               Ascend 910B3\\n'
    printf '        5        1         6               Ascend 910B3\\n'
    ;;
  "info -t board") printf 'NPU ID : %s\\nFirmware Version : 7.5.0.1.129\\n' "$5" ;;
  "info -t power") printf 'NPU ID : %s\\nPower Dissipation(W) : 90.5\\n' "$5" ;;
  *) exit 2 ;;
esac
"""


def test_npu_smi_reads_the_physical_chip_of_the_logical_index(
    npu: FakeNPU, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from backends import ascend

    script = tmp_path / "npu-smi"
    script.write_text(MULTI_CHIP_NPU_SMI)
    script.chmod(0o755)
    log = tmp_path / "calls.log"
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    monkeypatch.setenv("NPU_SMI_LOG", str(log))
    # torch's logical 1 is physical device 6: chip 1 of card 5
    monkeypatch.setenv("ASCEND_RT_VISIBLE_DEVICES", "4,6")
    ascend._chip_map.cache_clear()
    backend = AscendBackend(1)
    assert backend.telemetry() == {"power_w": 90.5}
    assert backend.settings()["npu.firmware"] == "7.5.0.1.129"
    calls = [line for line in log.read_text().splitlines() if "-t" in line]
    assert calls == ["info -t power -i 5 -c 1", "info -t board -i 5 -c 1"]
    assert ascend.physical_device_id(0) == 4
    assert ascend.npu_smi_address(4) == (4, 0)
    monkeypatch.delenv("ASCEND_RT_VISIBLE_DEVICES")
    assert ascend.physical_device_id(1) == 1
    assert ascend.POWER_SAMPLE_INTERVAL_S >= 1.0  # a process per sample: not every 0.2 s
    ascend._chip_map.cache_clear()
