"""Everything accelbench stores: pydantic models with a schema version. Nothing is pickled."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from backends.base import DeviceInfo
from harness.results.config import RunConfig
from harness.results.fidelity import FidelityResult

SCHEMA_VERSION = 1
"""Bumped on any change that an older reader could misread; readers refuse newer files."""

CaseStatus = Literal["ok", "failed", "unsupported"]
ErrorKind = Literal[
    "exception", "crash", "timeout", "oom", "nonfinite", "unsupported", "interrupted"
]
Stability = Literal["ok", "warn", "severe"]


class CaseKey(BaseModel):
    """What identifies a case across runs; two cases compare only when their keys match."""

    model_config = ConfigDict(frozen=True)

    workload: str
    workload_version: str
    mode: str
    dtype: str
    batch: int
    preset: str
    params: dict[str, Any] = Field(default_factory=dict)
    compile: bool = False
    nproc: int = 1

    @property
    def id(self) -> str:
        """Short readable id, e.g. `gpt/train/bf16/b8/small`."""
        text = f"{self.workload}/{self.mode}/{self.dtype}/b{self.batch}/{self.preset}"
        if self.compile:
            text += "/compiled"
        if self.nproc > 1:
            text += f"/np{self.nproc}"
        return text


class Measurement(BaseModel):
    """Timing samples of one case and their statistics (seconds per iteration)."""

    samples_s: list[float]
    iterations_per_sample: int
    warmup_iterations: int = 0
    cold_start_s: float | None = None
    total_time_s: float = 0.0
    median: float
    mean: float
    stdev: float
    q1: float
    q3: float
    iqr: float
    ci95: tuple[float, float]
    stable: bool
    """True when the 95% CI half-width of the median reached the requested precision."""
    stability: Stability
    """IQR/median: below 10% ok, below 25% warn, else severe."""
    outliers: list[Literal["", "mild", "severe"]] = Field(default_factory=list)
    """Tukey label of each sample (1.5 and 3 IQR fences); samples are never dropped."""

    @property
    def n(self) -> int:
        return len(self.samples_s)


class CaseError(BaseModel):
    """Why a case did not produce a measurement."""

    kind: ErrorKind
    message: str


class Throughput(BaseModel):
    """Items per second, with the unit of the items (samples/s, tokens/s, images/s, B/s)."""

    value: float
    unit: str


class RankTiming(BaseModel):
    """One rank's own timing of a distributed case (seconds per iteration, per sample)."""

    rank: int
    local_rank: int = 0
    host: str = ""
    samples_s: list[float]
    median: float
    peak_memory_bytes: int | None = None


class CollectivePoint(BaseModel):
    """One message size of a collectives sweep (nccl-tests conventions).

    `size_bytes` is S: the buffer of all_reduce/broadcast, the gathered output of all_gather,
    the input of reduce_scatter, each rank's send buffer of all_to_all. algbw = S / time;
    busbw = algbw x the operation's factor."""

    size_bytes: int
    median_s: float
    algbw: float
    """Bytes per second."""
    busbw: float
    """Bytes per second."""
    samples: int


class CaseResult(BaseModel):
    """The outcome of one case: its measurement and derived figures, or why it failed."""

    key: CaseKey
    status: CaseStatus
    error: CaseError | None = None
    measurement: Measurement | None = None
    throughput: Throughput | None = None
    flops_per_step: float | None = None
    achieved_flops: float | None = None
    bytes_per_step: float | None = None
    achieved_bandwidth: float | None = None
    mfu: float | None = None
    peak_flops_source: str | None = None
    mfu_note: str | None = None
    """Why `mfu` is missing (no usable peak, or it would exceed 100%)."""
    peak_memory_bytes: int | None = None
    extra: dict[str, float] = Field(default_factory=dict)
    started_at: datetime | None = None
    duration_s: float | None = None
    per_rank: list[RankTiming] | None = None
    """Distributed cases: every rank's own samples; `measurement` holds the per-sample max."""
    collectives: list[CollectivePoint] | None = None
    """Collectives probes: one point per message size."""
    scaling_efficiency: float | None = None
    """--scaling: (throughput / world) / (throughput_base / world_base), base = smallest world."""


class EnvironmentInfo(BaseModel):
    """The machine and software a run saw; what makes two runs comparable or not."""

    hostname: str
    platform: str
    python: str
    cpu_model: str
    logical_cores: int
    affinity_cores: int | None = None
    torch_version: str
    torch_build: str
    torch_threads: int
    torch_interop_threads: int
    accelbench_version: str
    git_commit: str | None = None
    load_average: tuple[float, float, float] | None = None
    cpu_governor: str | None = None
    cpu_turbo: str | None = None
    env_vars: dict[str, str] = Field(default_factory=dict)


class PeakFigure(BaseModel):
    """The peak that MFU is computed against, and where it comes from."""

    flops: float
    source: str


class DistInfo(BaseModel):
    """How a distributed run (`--nproc > 1` or `--scaling`) was launched."""

    dist_backend: str
    world_size: int
    """The largest world size of the run (processes over all nodes)."""
    world_sizes: list[int]
    """Every world size measured (more than one with --scaling)."""
    nnodes: int = 1
    node_rank: int = 0
    rdzv_endpoint: str | None = None
    launcher: str = "torch.distributed.run"
    threads_per_rank: int | None = None
    step_time: str = "max over ranks of each sample"


class RunRecord(BaseModel):
    """One `bench run`: configuration, environment, device and every case's result."""

    schema_version: int = SCHEMA_VERSION
    run_id: str
    started_at: datetime
    finished_at: datetime | None = None
    status: Literal["running", "complete", "incomplete"] = "running"
    command: list[str] = Field(default_factory=list)
    label: str = ""
    backend: str
    config: RunConfig
    environment: EnvironmentInfo
    device: DeviceInfo
    peaks: dict[str, PeakFigure] = Field(default_factory=dict)
    """dtype name -> peak FLOP/s used for MFU (known spec, else measured matmul)."""
    cases: list[CaseResult] = Field(default_factory=list)
    distributed: DistInfo | None = None
    """Set for distributed runs; None for single-process runs."""
    fidelity: list[FidelityResult] = Field(default_factory=list)
    """Training-fidelity checks against the reference (`bench run --fidelity`)."""
