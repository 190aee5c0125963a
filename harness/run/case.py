"""The plain data of a case and of one measured round: what the parent sends a worker and what
a worker sends back. Light to import (no torch at import time): planning, the supervisor, the
distributed job files and the CLI read these types without loading a device.

A worker returns one immutable `RoundResult` per round (raw samples and readings, no
statistics); the parent folds a case's rounds into its CaseResult (harness.run.fold), so no
CaseResult travels to a worker.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from harness.results.config import MeasureSettings
from harness.results.schema import (
    CaseError,
    CaseKey,
    CaseStatus,
    CollectivePoint,
    DenormalCount,
    OpProfile,
    RankTiming,
)

if TYPE_CHECKING:
    from backends.base import Backend
    from workloads.base import BuildContext


class ModelCopy(BaseModel):
    """One built copy of a model, by what decides its size: the mode and dtype of its case."""

    model_config = ConfigDict(frozen=True)

    mode: str
    dtype: str


class CaseSpec(BaseModel):
    """Everything a worker needs to run one case; plain data, sent as JSON."""

    backend: str
    key: CaseKey
    params: dict[str, Any] = Field(default_factory=dict)
    seed: int = 0
    measure: MeasureSettings = Field(default_factory=MeasureSettings)
    profile: bool = False
    """Profile the step after its measurement (`bench run --profile`)."""
    trace_dir: str | None = None
    """Where the profiled step's Chrome trace goes (`--profile-trace`); None: no trace."""
    alive_with: list[ModelCopy] = Field(default_factory=list)
    """The other copies of this case's model (same workload, preset and parameters) that the
    run keeps built in the same process beside it (interleave `run` or `workload`): the
    workload's memory estimate counts them (harness.run.schedule.alive_together)."""
    built_alone: bool = False
    """The run keeps no other case built beside this one (interleave `case`): a worker drops
    its other built cases before building it."""

    def unsupported_reason(self, backend: Backend) -> str | None:
        """Why `backend` cannot run this case's dtype, or None when it can."""
        from backends.base import DTYPES

        if backend.supports(DTYPES[self.key.dtype]):
            return None
        return f"backend '{backend.name}' does not support {self.key.dtype}"

    def build_context(
        self, backend: Backend, kind: type[BuildContext] | None = None
    ) -> BuildContext:
        """The BuildContext of this case on `backend`, seeded; `kind` lets the distributed
        harness hand workloads its own context (data-parallel training)."""
        from workloads.base import BuildContext

        key = self.key
        return (kind or BuildContext).seeded(
            backend,
            dtype_name=key.dtype,
            batch_size=key.batch,
            preset=key.preset,
            params=self.params,
            seed=self.seed,
            compile=key.compile,
            mode=key.mode,
            alive_with=[(copy.mode, copy.dtype) for copy in self.alive_with],
        )


class RoundSpec(BaseModel):
    """One round job: measure `case` for round `round` (from 0) of `rounds`."""

    case: CaseSpec
    round: int = Field(ge=0)
    rounds: int = Field(ge=1)


class RoundEnergy(BaseModel):
    """The energy reading of one round's measurement window (backends.base.EnergyReading's
    fields), or why there is none."""

    model_config = ConfigDict(frozen=True)

    joules: float | None = None
    seconds: float = 0.0
    method: str = ""
    reason: str = ""


class PhaseSamples(BaseModel):
    """Raw instrumented iterations of a staged step (harness.measurement.phases.PhaseTimer):
    seconds per phase and per iteration, folded into a PhaseBreakdown by the parent."""

    model_config = ConfigDict(frozen=True)

    iterations: list[dict[str, float]]
    step_times: list[float]
    clock: str = ""
    attribution: str = ""
    optimizer_bytes: float | None = None
    optimizer_bytes_note: str = ""


class RoundResult(BaseModel):
    """What one round of one case produced, raw: never statistics. Immutable; the parent
    folds a case's rounds (harness.run.fold.fold_rounds).

    `status` other than ok carries `error` (a failure, unsupported, or NaN/Inf output, whose
    samples are kept). Work, FLOPs and bytes are per process; `world` processes stepped
    together (their samples are the per-sample max over ranks, `per_rank` each rank's own)."""

    model_config = ConfigDict(frozen=True)

    key: CaseKey
    round: int = 0
    status: CaseStatus = "ok"
    error: CaseError | None = None
    samples_s: list[float] = Field(default_factory=list)
    iterations_per_sample: int = 1
    warmup_iterations: int = 0
    cold_start_s: float | None = None
    total_time_s: float = 0.0
    stable: bool = False
    world: int = 1
    work_items: float = 0.0
    work_unit: str = ""
    flops: float | None = None
    bytes_moved: float | None = None
    extra: dict[str, float] = Field(default_factory=dict)
    """Instance.extra_metrics at this round's median (the fold keeps the last round's)."""
    yardsticks: dict[str, float] = Field(default_factory=dict)
    energy: RoundEnergy | None = None
    energy_note: str | None = None
    """Why the round has no energy reading at all (a path that cannot read one)."""
    peak_memory_bytes: int | None = None
    host_fallbacks: list[str] = Field(default_factory=list)
    phases: PhaseSamples | None = None
    profile: OpProfile | None = None
    denormals: DenormalCount | None = None
    """Denormal values a training case left behind (CPU), counted after its last round."""
    per_rank: list[RankTiming] | None = None
    collectives: list[CollectivePoint] | None = None
    """A collective's message-size sweep in this round (the fold keeps the last round's)."""
    started_at: datetime | None = None
    duration_s: float | None = None
