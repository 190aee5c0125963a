"""Run configuration: what the user asked for, validated and stored with the results."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

Isolation = Literal["none", "worker", "case"]
"""Where cases run: in this process, in one reused worker process, or a fresh process each."""


class MeasureSettings(BaseModel):
    """How hard `measure` works on one case."""

    warmup_s: float = Field(0.1, ge=0)
    warmup_iterations: int = Field(2, ge=0)
    min_samples: int = Field(10, ge=3)
    max_samples: int = Field(1000, ge=3)
    max_time_s: float = Field(2.0, gt=0)
    precision: float = Field(0.01, gt=0)
    min_sample_s: float = Field(1e-3, gt=0)


PRESET_MEASURE: dict[str, MeasureSettings] = {
    "tiny": MeasureSettings(warmup_s=0.05, min_samples=10, max_time_s=0.5),
    "small": MeasureSettings(warmup_s=0.2, min_samples=10, max_time_s=2.0),
    "base": MeasureSettings(warmup_s=1.0, min_samples=20, max_time_s=10.0),
}
"""Per-preset defaults: tiny keeps CI fast, base is what a GPU user would run."""

PRESET_CASE_TIMEOUT_S: dict[str, float] = {"tiny": 60.0, "small": 180.0, "base": 900.0}


class RunConfig(BaseModel):
    """A `bench run` request. Lists are cross-multiplied into cases."""

    backend: str = "cpu"
    workloads: list[str] = Field(default_factory=list)
    """Empty means the default suite."""
    modes: list[str] = Field(default_factory=list)
    """Empty means every mode each workload supports."""
    dtypes: list[str] = Field(default_factory=lambda: ["fp32"])
    batches: list[int] = Field(default_factory=list)
    """Empty means each workload preset's own batch size."""
    preset: str = "small"
    params: dict[str, str] = Field(default_factory=dict)
    """`key=value` (every selected workload with that key) or `workload.key=value`."""
    compile: bool = False
    fidelity: bool = False
    reference: str = "cpu:fp32"
    fidelity_steps: int | None = Field(None, ge=1)
    """Training steps of each fidelity check; None means by preset (tiny 20, small 100)."""
    nproc: int = Field(1, ge=1)
    """Processes per node; > 1 runs through torchrun (harness.distributed)."""
    nnodes: int = Field(1, ge=1)
    node_rank: int = Field(0, ge=0)
    rdzv_endpoint: str | None = None
    """HOST:PORT of node 0 for multi-node runs (torchrun --rdzv-endpoint)."""
    scaling: bool = False
    """Measure 1..nproc processes per node and report scaling efficiency."""
    case_timeout_s: float | None = Field(None, gt=0)
    isolate: Isolation = "worker"
    label: str = ""
    seed: int = 0
    out: Path = Path("results")
    measure: MeasureSettings | None = None
    """None means the preset's defaults (PRESET_MEASURE)."""

    def measure_settings(self) -> MeasureSettings:
        return self.measure or PRESET_MEASURE.get(self.preset, MeasureSettings())

    def case_timeout(self) -> float:
        return self.case_timeout_s or PRESET_CASE_TIMEOUT_S.get(self.preset, 300.0)
