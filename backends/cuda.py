"""NVIDIA GPUs (and ROCm builds, which torch also exposes as `cuda`)."""

from __future__ import annotations

from types import ModuleType

import torch

from backends.accelerator import AcceleratorBackend
from backends.base import Availability


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
