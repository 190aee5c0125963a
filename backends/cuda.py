"""NVIDIA GPUs (and ROCm builds, which torch also exposes as `cuda`)."""

from __future__ import annotations

from types import ModuleType

import torch

from backends.accelerator import AcceleratorBackend
from backends.base import Availability, EnergyMeter
from backends.nvml import nvml_energy_meter, nvml_settings, nvml_telemetry
from backends.settings import ask, env_settings, torch_settings

CUDA_ENV = ("CUBLAS_WORKSPACE_CONFIG", "CUDA_LAUNCH_BLOCKING", "NVIDIA_TF32_OVERRIDE")
CUDA_ENV_PREFIXES = ("NCCL_",)


def cuda_settings() -> dict[str, str]:
    """The torch flags that change CUDA numerics or speed (TF32 for matmul and cuDNN, fp32
    matmul precision, cuDNN benchmark/deterministic, deterministic algorithms), the cuBLAS and
    NCCL environment, and the CUDA, cuDNN and NCCL versions torch was built with. Reads only
    torch's own flags, so it answers on a CPU-only build too."""
    found = {
        **torch_settings(),
        "cuda.matmul.allow_tf32": ask(lambda: torch.backends.cuda.matmul.allow_tf32),
        "cuda.matmul.allow_fp16_reduced_precision_reduction": ask(
            lambda: torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction
        ),
        "cuda.matmul.allow_bf16_reduced_precision_reduction": ask(
            lambda: torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction
        ),
        "cudnn.allow_tf32": ask(lambda: torch.backends.cudnn.allow_tf32),
        "cudnn.benchmark": ask(lambda: torch.backends.cudnn.benchmark),
        "cudnn.deterministic": ask(lambda: torch.backends.cudnn.deterministic),
        "version.cuda": ask(lambda: torch.version.cuda or torch.version.hip),
        "version.cudnn": ask(torch.backends.cudnn.version),
        "version.nccl": ask(lambda: ".".join(map(str, torch.cuda.nccl.version()))),
    }
    settings = {name: value for name, value in found.items() if value is not None}
    return {**settings, **env_settings(CUDA_ENV, CUDA_ENV_PREFIXES)}


def _fp32_precision(*path: str) -> str:
    """The `fp32_precision` of torch.backends.<path> under torch's newer API, "none" resolved
    through its parents (cuda.matmul -> cuda -> the global one); "none" where nothing is set."""
    for depth in range(len(path), -1, -1):
        node: object = torch.backends
        for part in path[:depth]:
            node = getattr(node, part)
        value = str(getattr(node, "fp32_precision", "none"))
        if value != "none":
            return value
    return "none"


def cuda_fp32_downcasts() -> list[str]:
    """The TF32 switches now on: fp32 matmuls/convolutions then run with a 10-bit mantissa.

    Reads the legacy flags (allow_tf32, float32_matmul_precision); once a program has used
    torch's newer `fp32_precision` API, torch refuses to answer the legacy questions, and the
    new API's state is read instead. Never raises."""
    on = []
    try:
        if torch.backends.cuda.matmul.allow_tf32:
            on.append("torch.backends.cuda.matmul.allow_tf32=True")
        elif torch.get_float32_matmul_precision() != "highest":  # the same switch as allow_tf32
            on.append(f"torch.float32_matmul_precision={torch.get_float32_matmul_precision()}")
    except RuntimeError:  # legacy and new APIs mixed
        if _fp32_precision("cuda", "matmul") == "tf32":
            on.append("torch.backends.cuda.matmul.fp32_precision=tf32")
    try:
        if torch.backends.cudnn.allow_tf32:
            on.append("torch.backends.cudnn.allow_tf32=True")
    except RuntimeError:
        for op in ("conv", "rnn"):
            if _fp32_precision("cudnn", op) == "tf32":
                on.append(f"torch.backends.cudnn.{op}.fp32_precision=tf32")
    return on


class CUDABackend(AcceleratorBackend):
    name = "cuda"
    device_type = "cuda"
    dist_backend = "nccl"
    install_hint = (
        "Install a CUDA build of torch (https://pytorch.org/get-started/locally/) on a machine "
        "with an NVIDIA driver, and check CUDA_VISIBLE_DEVICES."
    )

    @classmethod
    def unavailable_reason(cls, module: ModuleType) -> Availability:
        if torch.version.cuda is None and torch.version.hip is None:
            return Availability(
                ok=False,
                reason=f"this torch build ({torch.__version__}) is CPU-only: it has no CUDA.",
                hint=cls.install_hint,
            )
        return Availability(
            ok=False,
            reason=(
                f"torch {torch.__version__} was built with CUDA {torch.version.cuda} "
                "but sees no CUDA device (no GPU, no driver, or CUDA_VISIBLE_DEVICES hides it)."
            ),
            hint=cls.install_hint,
        )

    def runtime_versions(self) -> dict[str, str]:
        versions = super().runtime_versions()
        versions["cuda"] = str(torch.version.cuda or torch.version.hip)
        cudnn = torch.backends.cudnn.version()
        if cudnn:
            versions["cudnn"] = str(cudnn)
        return versions

    def _uuid(self) -> str | None:
        uuid = getattr(self.module.get_device_properties(self.index), "uuid", None)
        return f"GPU-{uuid}" if uuid else None

    def settings(self) -> dict[str, str]:
        """cuda_settings() plus what NVML says of this GPU (driver, clocks, power limit)."""
        return {**cuda_settings(), **nvml_settings(self.index, self._uuid())}

    def fp32_downcasts(self) -> list[str]:
        return cuda_fp32_downcasts()

    def energy_meter(self) -> EnergyMeter:
        return nvml_energy_meter(self.index, self._uuid())

    def telemetry(self) -> dict[str, float]:
        return nvml_telemetry(self.index, self._uuid())
