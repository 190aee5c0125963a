"""NVIDIA's management library through nvidia-ml-py (module `pynvml`), imported lazily and
optional: driver version, clocks, power limit, power, temperature and the total-energy counter
of one GPU. Every query is best effort; nothing here raises."""

from __future__ import annotations

import functools
from types import ModuleType
from typing import Any

from backends.base import EnergyMeter, NoEnergy
from backends.energy import CounterMeter, PowerSampler

NVML_HINT = "install nvidia-ml-py (`pip install nvidia-ml-py`) for NVML readings"
POWER_SAMPLE_INTERVAL_S = 0.05
"""How often NVML power is sampled when the device has no total-energy counter (pre-Volta)."""

# NVML enum values (nvml.h); read from the module when it defines them.
_CLOCK_SM, _CLOCK_MEM, _TEMPERATURE_GPU = 1, 2, 0


@functools.cache
def load_nvml() -> tuple[ModuleType | None, str]:
    """(pynvml, "") once NVML is initialised in this process, else (None, why not)."""
    try:
        import pynvml as nvml
    except ImportError:
        return None, f"nvidia-ml-py is not installed ({NVML_HINT})"
    try:
        nvml.nvmlInit()
    except Exception as exc:
        return None, f"NVML failed to initialise: {type(exc).__name__}: {exc}"
    return nvml, ""


def device_handle(nvml: ModuleType, index: int, uuid: str | None = None) -> Any:
    """The NVML handle of a GPU: by UUID when torch gave one (CUDA_VISIBLE_DEVICES renumbers
    devices, NVML does not), else by index."""
    if uuid:
        try:
            return nvml.nvmlDeviceGetHandleByUUID(uuid)
        except Exception:
            pass
    return nvml.nvmlDeviceGetHandleByIndex(index)


def _ask(fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except Exception:
        return None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def nvml_settings(index: int, uuid: str | None = None) -> dict[str, str]:
    """Driver version, clocks (current/max/application SM and memory, MHz) and power limits
    (W) of one GPU, where NVML answers; {"nvml": why not} where it cannot be used."""
    nvml, why = load_nvml()
    if nvml is None:
        return {"nvml": why}
    facts: dict[str, str] = {}
    driver = _ask(nvml.nvmlSystemGetDriverVersion)
    if driver:
        facts["nvml.driver_version"] = _text(driver)
    handle = _ask(device_handle, nvml, index, uuid)
    if handle is None:
        return {**facts, "nvml": f"NVML has no device {index}"}
    sm = getattr(nvml, "NVML_CLOCK_SM", _CLOCK_SM)
    mem = getattr(nvml, "NVML_CLOCK_MEM", _CLOCK_MEM)
    for name, fn, clock in (
        ("nvml.sm_clock_max_mhz", "nvmlDeviceGetMaxClockInfo", sm),
        ("nvml.mem_clock_max_mhz", "nvmlDeviceGetMaxClockInfo", mem),
        ("nvml.sm_clock_applications_mhz", "nvmlDeviceGetApplicationsClock", sm),
        ("nvml.mem_clock_applications_mhz", "nvmlDeviceGetApplicationsClock", mem),
    ):
        value = _ask(getattr(nvml, fn, None), handle, clock)
        if value is not None:
            facts[name] = str(value)
    for name, fn in (
        ("nvml.power_limit_w", "nvmlDeviceGetEnforcedPowerLimit"),
        ("nvml.power_limit_default_w", "nvmlDeviceGetPowerManagementDefaultLimit"),
    ):
        value = _ask(getattr(nvml, fn, None), handle)
        if value is not None:
            facts[name] = f"{value / 1000:g}"
    return facts


def nvml_telemetry(index: int, uuid: str | None = None) -> dict[str, float]:
    """One sample: SM clock (MHz), power (W) and temperature (C), where NVML answers."""
    nvml, _ = load_nvml()
    if nvml is None:
        return {}
    handle = _ask(device_handle, nvml, index, uuid)
    if handle is None:
        return {}
    sample: dict[str, float] = {}
    clock = _ask(nvml.nvmlDeviceGetClockInfo, handle, getattr(nvml, "NVML_CLOCK_SM", _CLOCK_SM))
    if clock is not None:
        sample["clock_mhz"] = float(clock)
    power = _ask(nvml.nvmlDeviceGetPowerUsage, handle)
    if power is not None:
        sample["power_w"] = power / 1000.0
    sensor = getattr(nvml, "NVML_TEMPERATURE_GPU", _TEMPERATURE_GPU)
    temperature = _ask(nvml.nvmlDeviceGetTemperature, handle, sensor)
    if temperature is not None:
        sample["temperature_c"] = float(temperature)
    return sample


def nvml_energy_meter(index: int, uuid: str | None = None) -> EnergyMeter:
    """NVML's total-energy counter (mJ since driver load, Volta and later); where the device
    lacks it, NVML power samples integrated over time; else NoEnergy with the reason."""
    nvml, why = load_nvml()
    if nvml is None:
        return NoEnergy(why)
    handle = _ask(device_handle, nvml, index, uuid)
    if handle is None:
        return NoEnergy(f"NVML has no device {index}")
    if _ask(nvml.nvmlDeviceGetTotalEnergyConsumption, handle) is not None:
        return CounterMeter(
            lambda: nvml.nvmlDeviceGetTotalEnergyConsumption(handle) / 1000.0,
            method="NVML total energy counter",
        )
    if _ask(nvml.nvmlDeviceGetPowerUsage, handle) is not None:
        return PowerSampler(
            lambda: nvml.nvmlDeviceGetPowerUsage(handle) / 1000.0,
            method="NVML power usage",
            interval_s=POWER_SAMPLE_INTERVAL_S,
        )
    return NoEnergy(f"NVML gives neither an energy counter nor power for device {index}")
