"""Settings that change numerics or speed: what each backend records, that a run stores them,
that `compare` names a difference, and that a failed fp32 fidelity check names TF32/HF32."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from backends.cpu import CPUBackend, cpu_settings, isa_features
from backends.cuda import cuda_fp32_downcasts, cuda_settings
from harness.analysis.compare import environment_differences
from harness.fidelity.jobs import check_fidelity
from harness.run.session import describe_with_settings
from tests.run_records import record
from tests.unit.test_fidelity import FlippedGradientsBackend

XEON_CPUINFO = """processor\t: 0
model name\t: Intel(R) Xeon(R) Platinum 8480+
cpu MHz\t\t: 2000.000
flags\t\t: fpu sse avx avx2 fma f16c avx512f avx512bw avx512vl avx512_bf16 avx512_fp16 \
amx_bf16 amx_tile amx_int8
"""
GRAVITON_CPUINFO = "processor\t: 0\nFeatures\t: fp asimd evtstrm aes sve bf16 i8mm\n"


def test_isa_features_are_read_from_x86_flags_and_arm_features() -> None:
    assert isa_features(XEON_CPUINFO) == [
        "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_bf16",
        "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8",
    ]  # fmt: skip
    assert isa_features(GRAVITON_CPUINFO) == ["asimd", "sve", "bf16", "i8mm"]
    assert isa_features("") == []


def test_cpu_settings_name_threads_isa_precision_and_thread_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    monkeypatch.setenv("MKL_NUM_THREADS", "2")
    found = cpu_settings()
    assert found["torch.num_threads"] == str(torch.get_num_threads())
    assert found["torch.float32_matmul_precision"] == torch.get_float32_matmul_precision()
    assert found["torch.cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert found["$OMP_NUM_THREADS"] == "3" and found["$MKL_NUM_THREADS"] == "2"
    assert "cpu.isa" in found  # this machine's /proc/cpuinfo lists at least AVX or NEON


@pytest.fixture
def tf32_flags() -> Iterator[None]:
    """Restores torch's process-wide TF32 switches and fp32 matmul precision after the test
    (they are computed attributes, which monkeypatch cannot undo)."""
    saved = (
        torch.backends.cuda.matmul.allow_tf32,
        torch.backends.cudnn.allow_tf32,
        torch.get_float32_matmul_precision(),
    )
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved[:2]
    torch.set_float32_matmul_precision(saved[2])


@pytest.mark.usefixtures("tf32_flags")
def test_cuda_settings_follow_torch_flags_and_nccl_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    assert cuda_settings()["cuda.matmul.allow_tf32"] == "False"
    assert cuda_fp32_downcasts() == []
    torch.backends.cuda.matmul.allow_tf32 = True
    monkeypatch.setenv("NCCL_ALGO", "Ring")
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    found = cuda_settings()
    assert found["cuda.matmul.allow_tf32"] == "True"
    assert found["$NCCL_ALGO"] == "Ring" and found["$CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    assert {"cudnn.benchmark", "cudnn.deterministic", "torch.deterministic_algorithms"} <= set(
        found
    )
    assert cuda_fp32_downcasts() == ["torch.backends.cuda.matmul.allow_tf32=True"]


def test_a_run_stores_the_backend_settings_and_survives_a_raising_hook() -> None:
    info = describe_with_settings(CPUBackend())
    assert info.settings["torch.num_threads"] == str(torch.get_num_threads())

    class BrokenSettings(CPUBackend):
        name = "broken-settings"

        def settings(self) -> dict[str, str]:
            raise RuntimeError("driver query failed")

    info = describe_with_settings(BrokenSettings())
    assert info.settings == {"settings.error": "RuntimeError: driver query failed"}


def test_a_run_stores_the_fp32_downcasts_on_when_it_began() -> None:
    class TF32On(CPUBackend):
        name = "tf32-on"

        def fp32_downcasts(self) -> list[str]:
            return ["torch.backends.cudnn.allow_tf32=True"]

    class BrokenDowncasts(CPUBackend):
        name = "broken-downcasts"

        def fp32_downcasts(self) -> list[str]:
            raise RuntimeError("flag query failed")

    assert describe_with_settings(CPUBackend()).fp32_downcasts == []
    on = describe_with_settings(TF32On()).fp32_downcasts
    assert on == ["torch.backends.cudnn.allow_tf32=True"]
    assert describe_with_settings(BrokenDowncasts()).fp32_downcasts is None


def test_compare_names_changed_settings_once() -> None:
    base, new = record("cuda", "NVIDIA H100 80GB HBM3"), record("cuda", "NVIDIA H100 80GB HBM3")
    base.device.settings = {"cuda.matmul.allow_tf32": "False", "$OMP_NUM_THREADS": "1"}
    new.device.settings = {"cuda.matmul.allow_tf32": "True", "$OMP_NUM_THREADS": "2"}
    base.environment.env_vars = {"OMP_NUM_THREADS": "1"}
    new.environment.env_vars = {"OMP_NUM_THREADS": "2"}
    assert environment_differences(base, new) == [
        "$OMP_NUM_THREADS: 1 -> 2",
        "setting cuda.matmul.allow_tf32: False -> True",
    ]


def test_a_failed_fp32_check_with_tf32_on_says_so() -> None:
    class FlippedWithTF32(FlippedGradientsBackend):
        def fp32_downcasts(self) -> list[str]:
            return ["torch.backends.cuda.matmul.allow_tf32=True"]

    result = check_fidelity(FlippedWithTF32(), "mlp", "fp32", "tiny", determinism=False)
    assert result.verdict == "fail"
    assert result.reasons[-1] == (
        "fp32 matmuls/convolutions on this device ran in reduced precision "
        "(torch.backends.cuda.matmul.allow_tf32=True): turn that off to check true fp32"
    )
    assert FlippedGradientsBackend().fp32_downcasts() == []  # the default: fp32 means fp32
