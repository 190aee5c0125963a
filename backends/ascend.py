"""Huawei Ascend NPUs through torch_npu, imported only when the backend is asked for.

Everything runs on the generic accelerator path (torch.npu events, synchronize, memory
statistics; autocast on device type "npu"; collectives over "hccl"); this module adds how the
runtime is loaded, why it may be missing, and what torch_npu can tell about the device.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from backends.accelerator import AcceleratorBackend
from backends.ascend_profiler import torch_npu_window
from backends.base import Availability, EnergyMeter, NoEnergy
from backends.energy import PowerSampler
from backends.profiling import ProfileWindow
from backends.settings import env_settings, torch_settings

ASCEND_ENV = (
    "INF_NAN_MODE_ENABLE",
    "NPU_ASD_ENABLE",
    "TASK_QUEUE_ENABLE",
    "ASCEND_LAUNCH_BLOCKING",
    "ACL_OP_COMPILER_CACHE_MODE",
    "ACL_OP_COMPILER_CACHE_DIR",
    "PYTORCH_NPU_ALLOC_CONF",
    "ASCEND_RT_VISIBLE_DEVICES",
    "COMBINED_ENABLE",
)
ASCEND_ENV_PREFIXES = ("HCCL_",)
NPU_SMI_TIMEOUT_S = 10.0
POWER_SAMPLE_INTERVAL_S = 1.0
"""npu-smi is a process per sample (tens of ms of host CPU each), so power is sampled once a
second: a process spawned every 0.2 s would compete with the timed steps for the host."""

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
    warns_once_per_process = True
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

    def npu_smi_target(self) -> list[str]:
        """The `-i NPU -c CHIP` arguments that make npu-smi read this backend's chip
        (`npu_smi_address` of its physical id)."""
        npu, chip = npu_smi_address(physical_device_id(self.index))
        return ["-i", str(npu), "-c", str(chip)]

    def settings(self) -> dict[str, str]:
        """ascend_settings(), the SoC name, and the firmware version where npu-smi tells."""
        found = ascend_settings(importlib.import_module("torch_npu"))
        found["npu.soc"] = str(self.module.get_device_name(self.index))
        try:
            board = parse_npu_smi_fields(npu_smi("info", "-t", "board", *self.npu_smi_target()))
        except Exception:
            board = {}
        if board.get("Firmware Version"):
            found["npu.firmware"] = board["Firmware Version"]
        return found

    def fp32_downcasts(self) -> list[str]:
        """The HF32 switches now on: fp32 matmuls/convolutions then run in HF32."""
        found = ascend_settings(importlib.import_module("torch_npu"))
        return [
            f"torch_npu.{name}=True"
            for name in ("npu.matmul.allow_hf32", "npu.conv.allow_hf32")
            if found.get(name) == "True"
        ]

    def energy_meter(self) -> EnergyMeter:
        return npu_smi_power_meter(self.npu_smi_target())

    def profile_window(
        self, step: Callable[[], object], iterations: int, trace_path: Path | None = None
    ) -> ProfileWindow:
        """torch_npu's own profiler (backends.ascend_profiler): torch.profiler's PrivateUse1
        activity does not see NPU kernels. Without torch_npu.profiler, torch.profiler's host
        view, with a note saying so."""
        try:
            profiler = importlib.import_module("torch_npu.profiler")
        except Exception as exc:
            window = super().profile_window(step, iterations, trace_path)
            if window.device_rows_seen():
                return window
            note = (
                f"torch_npu.profiler is unavailable ({type(exc).__name__}: {exc}): operators "
                "are ranked by host self time"
            )
            return window.model_copy(update={"note": note})
        return torch_npu_window(profiler, step, iterations, self.synchronize, trace_path)

    def telemetry(self) -> dict[str, float]:
        try:
            text = npu_smi("info", "-t", "power", *self.npu_smi_target())
            return {"power_w": parse_npu_smi_power(text)}
        except Exception:
            return {}


def npu_smi(*args: str) -> str:
    """stdout of `npu-smi ARGS` (found on PATH); raises OSError/SubprocessError or
    RuntimeError (non-zero exit, with its stderr) when it cannot answer."""
    exe = shutil.which("npu-smi")
    if exe is None:
        raise FileNotFoundError("npu-smi is not on PATH")
    done = subprocess.run(
        [exe, *args], capture_output=True, text=True, timeout=NPU_SMI_TIMEOUT_S, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"npu-smi {' '.join(args)} exited {done.returncode}: {done.stderr}")
    return done.stdout


def parse_npu_smi_power(text: str) -> float:
    """Watts from `npu-smi info -t power` output (a line like `Power Dissipation(W) : 93.2`
    or `Real-time Power(W) : 93.2`); raises ValueError when no power line is there."""
    match = re.search(r"power[^:\n]*:\s*([0-9]+(?:\.[0-9]+)?)", text, re.IGNORECASE)
    if match is None:
        raise ValueError(f"no power reading in npu-smi output: {text.strip()[:200]!r}")
    return float(match.group(1))


def parse_npu_smi_fields(text: str) -> dict[str, str]:
    """`Name : value` lines of npu-smi output, as a dict (e.g. `Firmware Version`)."""
    fields = {}
    for line in text.splitlines():
        name, sep, value = line.partition(":")
        if sep and name.strip() and value.strip():
            fields[name.strip()] = value.strip()
    return fields


def physical_device_id(index: int) -> int:
    """The physical device id of torch's logical NPU `index`: ASCEND_RT_VISIBLE_DEVICES lists
    the physical ids torch renumbers from 0 (unset or unparsable: the same number)."""
    visible = os.environ.get("ASCEND_RT_VISIBLE_DEVICES", "").strip()
    if not visible:
        return index
    try:
        ids = [int(part) for part in visible.split(",") if part.strip()]
    except ValueError:
        return index
    return ids[index] if 0 <= index < len(ids) else index


@functools.cache
def _chip_map() -> dict[int, tuple[int, int]]:
    """Chip logic id -> (NPU id, chip id), from `npu-smi info -m` (a table of `NPU ID  Chip ID
    Chip Logic ID  Chip Name` rows; rows without a logic id, such as the MCU, are skipped).
    Empty when npu-smi cannot answer."""
    try:
        text = npu_smi("info", "-m")
    except Exception:
        return {}
    found: dict[int, tuple[int, int]] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 3 and all(p.isdigit() for p in parts[:3]):
            found[int(parts[2])] = (int(parts[0]), int(parts[1]))
    return found


def npu_smi_address(device_id: int) -> tuple[int, int]:
    """(NPU id, chip id) npu-smi addresses the chip of physical device `device_id` by: its row
    in `npu-smi info -m` (cards with several chips give each its own chip id); without that
    table, (device_id, 0), one chip per card as on Atlas 800 A2 servers."""
    return _chip_map().get(device_id, (device_id, 0))


def npu_smi_power_meter(target: list[str]) -> EnergyMeter:
    """Power from `npu-smi info -t power TARGET` (`-i NPU -c CHIP`), sampled and integrated;
    NoEnergy with the reason when npu-smi is missing or gives no power reading."""

    def read() -> float:
        return parse_npu_smi_power(npu_smi("info", "-t", "power", *target))

    try:
        read()
    except Exception as exc:
        return NoEnergy(f"npu-smi gives no power reading: {type(exc).__name__}: {exc}")
    return PowerSampler(read, method="npu-smi power", interval_s=POWER_SAMPLE_INTERVAL_S)


def ascend_settings(torch_npu: ModuleType) -> dict[str, str]:
    """HF32 for matmul and convolution, the op compile mode (jit or precompiled binary
    kernels), the Ascend/HCCL environment, and torch_npu's, CANN's and the driver's versions."""
    npu = getattr(torch_npu, "npu", None)
    found: dict[str, str | None] = dict(torch_settings())
    for name, dotted in (
        ("npu.matmul.allow_hf32", "matmul.allow_hf32"),
        ("npu.conv.allow_hf32", "conv.allow_hf32"),
    ):
        value: Any = npu
        for part in dotted.split("."):
            value = getattr(value, part, None)
        found[name] = None if value is None else str(value)
    jit_false = _attribute(npu, "is_jit_compile_false")
    if jit_false is not None:
        with contextlib.suppress(Exception):
            found["npu.op_compile_mode"] = "binary" if jit_false() else "jit"
    found["version.torch_npu"] = str(getattr(torch_npu, "__version__", "")) or None
    get_cann_version = _attribute(torch_npu, "npu.utils.get_cann_version")
    found["version.cann"] = _ask(get_cann_version, module="CANN") or None
    found["version.driver"] = _ask(get_cann_version, module="DRIVER") or None
    settings = {name: value for name, value in found.items() if value is not None}
    return {**settings, **env_settings(ASCEND_ENV, ASCEND_ENV_PREFIXES)}


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
