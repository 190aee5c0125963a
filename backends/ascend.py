"""Huawei Ascend NPUs through torch_npu, imported only when the backend is asked for."""

from __future__ import annotations

import importlib

import torch

from backends.accelerator import AcceleratorBackend
from backends.base import Availability


def _install_hint() -> str:
    base = torch.__version__.split("+")[0]
    return (
        "Install Huawei's Ascend CANN toolkit, source its set_env.sh, then install the torch-npu "
        f"release that matches this torch ({base}), e.g. `pip install torch-npu=={base}.*`."
    )


class AscendBackend(AcceleratorBackend):
    name = "npu"
    device_type = "npu"
    dist_backend = "hccl"
    install_hint = _install_hint()

    @classmethod
    def load_runtime(cls) -> None:
        importlib.import_module("torch_npu")

    @classmethod
    def availability(cls) -> Availability:
        try:
            importlib.import_module("torch_npu")
        except ModuleNotFoundError as exc:
            if exc.name == "torch_npu":
                return Availability(
                    ok=False, reason="torch_npu is not installed.", hint=cls.install_hint
                )
            return Availability(
                ok=False,
                reason=f"torch_npu failed to import: {type(exc).__name__}: {exc}",
                hint=cls.install_hint,
            )
        except Exception as exc:
            return Availability(
                ok=False,
                reason=f"torch_npu failed to import: {type(exc).__name__}: {exc}",
                hint=cls.install_hint,
            )
        return super().availability()

    def runtime_versions(self) -> dict[str, str]:
        versions = super().runtime_versions()
        torch_npu = importlib.import_module("torch_npu")
        versions["torch_npu"] = str(getattr(torch_npu, "__version__", "unknown"))
        cann = getattr(getattr(torch_npu, "version", None), "cann", None)
        if cann:
            versions["cann"] = str(cann)
        return versions
