"""What a run stores about its device: a plain pydantic model (no torch), so reading results
never loads a device runtime. Backends fill it (`Backend.describe()`); it sits here, below
the harness, because the backend contract returns it, and results store it as it is."""

from __future__ import annotations

from pydantic import BaseModel, Field


class DeviceInfo(BaseModel):
    """What a backend knows about its device, stored with every run."""

    backend: str
    device_type: str
    name: str
    count: int = 1
    memory_bytes: int | None = None
    runtime: dict[str, str] = Field(default_factory=dict)
    peak_flops: dict[str, float] = Field(
        default_factory=dict, description="known dense peak FLOP/s per dtype name (fp32, bf16...)"
    )
    peak_bandwidth: float | None = Field(None, description="known memory bandwidth, bytes/s")
    peak_source: str = ""
    peak_sources: dict[str, str] = Field(
        default_factory=dict, description="dtype name -> where that peak figure comes from"
    )
    peak_model: str = Field(
        "",
        description="the peak table's device model (backends.peaks) whose figures fill the peak "
        "fields; empty when they are the backend's own. Set by harness.results.derive, which "
        "refreshes them from the current table whenever a run is written or read",
    )
    extra: dict[str, str] = Field(default_factory=dict)
    settings: dict[str, str] = Field(
        default_factory=dict,
        description="settings that change numerics or speed (Backend.settings()), by name",
    )
    fp32_downcasts: list[str] | None = Field(
        None,
        description="Backend.fp32_downcasts() when the run began: the settings that let fp32 "
        "matmuls or convolutions run in TF32/HF32, as name=value; empty when fp32 meant fp32; "
        "None when not recorded (files written before it was)",
    )
