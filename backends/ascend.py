"""Huawei Ascend NPUs through torch_npu, imported only when the backend is asked for.

Everything runs on the generic accelerator path (torch.npu events, synchronize, memory
statistics; autocast on device type "npu"; collectives over "hccl"); this module adds how the
runtime is loaded, why it may be missing, and what torch_npu can tell about the device.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from types import ModuleType
from typing import Any

import torch

from backends.accelerator import AcceleratorBackend
from backends.base import Availability

CANN_HINT = (
    "The CANN runtime libraries (libhccl.so, libascendcl.so, ...) are not on the library path: "
    "install Huawei's Ascend CANN toolkit and run "
    "`source /usr/local/Ascend/ascend-toolkit/set_env.sh` before `bench`."
)
AUTOLOAD_NOTE = (
    "If `import torch` itself fails because of torch_npu, set TORCH_DEVICE_BACKEND_AUTOLOAD=0 "
    "to use the other backends meanwhile."
)


def _torch_release() -> str:
    return torch.__version__.split("+")[0]


def _install_hint() -> str:
    base = _torch_release()
    return (
        "Install Huawei's Ascend CANN toolkit, source its set_env.sh, then install the torch-npu "
        f"release that matches this torch ({base}), e.g. `pip install torch-npu=={base}.*`."
    )


def _major_minor(version: str) -> tuple[str, ...]:
    return tuple(version.split("+")[0].split(".")[:2])


class AscendBackend(AcceleratorBackend):
    name = "npu"
    device_type = "npu"
    dist_backend = "hccl"
    install_hint = _install_hint()

    @classmethod
    def load_runtime(cls) -> None:
        importlib.import_module("torch_npu")

    @classmethod
    def device_module(cls) -> ModuleType:
        """`torch.npu`, which importing torch_npu registers (read directly rather than through
        the cached torch.get_device_module)."""
        module = getattr(torch, "npu", None)
        if module is None:
            raise RuntimeError("torch_npu was imported but did not register torch.npu")
        return module

    @classmethod
    def availability(cls) -> Availability:
        """ok=False with the exact import error and the fix when torch_npu is missing, cannot
        find CANN's libraries, was built for another torch, or sees no NPU."""
        try:
            torch_npu = importlib.import_module("torch_npu")
        except ModuleNotFoundError as exc:
            if exc.name == "torch_npu":
                return Availability(
                    ok=False, reason="torch_npu is not installed.", hint=cls.install_hint
                )
            return cls._import_failure(exc)
        except Exception as exc:  # a broken runtime must never break `bench`
            return cls._import_failure(exc)
        npu_version = str(getattr(torch_npu, "__version__", ""))
        if npu_version and _major_minor(npu_version) != _major_minor(torch.__version__):
            return Availability(
                ok=False,
                reason=(
                    f"torch_npu {npu_version} does not match torch {torch.__version__}: "
                    "their releases must be the same."
                ),
                hint=cls.install_hint,
            )
        return super().availability()

    @classmethod
    def _import_failure(cls, exc: BaseException) -> Availability:
        message = f"{type(exc).__name__}: {exc}"
        missing_library = ".so" in str(exc) or isinstance(exc, OSError)
        hint = f"{CANN_HINT} {AUTOLOAD_NOTE}" if missing_library else cls.install_hint
        return Availability(ok=False, reason=f"torch_npu failed to import: {message}", hint=hint)

    @classmethod
    def unavailable_reason(cls, module: ModuleType) -> Availability:
        return Availability(
            ok=False,
            reason=(
                "torch_npu loaded but sees no NPU (no Ascend driver, or "
                "ASCEND_RT_VISIBLE_DEVICES hides them)."
            ),
            hint="Check `npu-smi info` and the Ascend driver installation.",
        )

    def runtime_versions(self) -> dict[str, str]:
        """torch, torch_npu, and the CANN and driver versions where torch_npu exposes them."""
        versions = super().runtime_versions()
        torch_npu = importlib.import_module("torch_npu")
        versions["torch_npu"] = str(getattr(torch_npu, "__version__", "unknown"))
        get_cann_version = _attribute(torch_npu, "npu.utils.get_cann_version")
        for key, component in (("cann", "CANN"), ("driver", "DRIVER")):
            value = _ask(get_cann_version, module=component)
            if value:
                versions[key] = value
        if "cann" not in versions:
            cann = getattr(getattr(torch, "version", None), "cann", None)
            if cann:
                versions["cann"] = str(cann)
        return versions


def _attribute(root: object, dotted: str) -> Callable[..., Any] | None:
    """root.a.b.c, or None when any part is missing."""
    value: Any = root
    for part in dotted.split("."):
        value = getattr(value, part, None)
        if value is None:
            return None
    return value if callable(value) else None


def _ask(fn: Callable[..., Any] | None, **kwargs: Any) -> str:
    """str(fn(**kwargs)), or "" when fn is missing or fails (version queries are best effort)."""
    if fn is None:
        return ""
    try:
        return str(fn(**kwargs) or "")
    except Exception:
        return ""
