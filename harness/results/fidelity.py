"""What a fidelity check stores (both training trajectories, their comparison and a verdict)
and the data it is judged by (the per-dtype tolerances, band factors and floors).

Kept apart from harness/fidelity (which runs torch) so that the results schema, the judge
(harness.results.fidelity_judge) and the report read and re-judge fidelity results without
building anything. The numbers are derived by tests/perf/derive_fidelity_floors.py
(docs/fidelity.md).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from harness.errors import BenchError
from harness.results.presets import PRESETS

FidelityVerdict = Literal["pass", "warn", "fail", "skipped"]

FIDELITY_WORKLOADS: tuple[str, ...] = ("gpt", "llama", "moe", "mlp", "convnet")
"""Workloads whose training a run checks for fidelity (those registered here)."""

COMPARE_STEPS = 20
"""Leading steps compared one to one against the bands (the whole run: final loss)."""

DETERMINISM_STEPS = 20
"""The determinism check repeats at most this many steps on the target (bounds its cost)."""

LOSS_SCALE_FLOOR = 0.1
"""A loss deviation is divided by the reference's loss at the step, but never by less than
this fraction of its initial loss: a loss that approaches zero (the convnet reaches 0.01)
would otherwise turn rounding noise into a large relative deviation."""

MAX_SKIPPED_FRACTION = 0.25
"""fp16 steps skipped by the loss scaler (gradient overflow) beyond this fraction warn."""


def fidelity_steps(preset: str, steps: int | None = None) -> int:
    """Steps for a preset (its Preset.fidelity_steps: tiny 20, small 100) unless given."""
    if steps is not None:
        if steps < 1:
            raise BenchError(f"fidelity steps must be >= 1, got {steps}.")
        return steps
    return PRESETS[preset].fidelity_steps  # type: ignore[index]


class FidelityTolerance(BaseModel):
    """Largest relative deviation from the reference that still passes (`pass_*`) or only
    warns (`warn_*`); beyond `warn_*` the check fails. Loss: x the reference's loss at the
    same step; gradient norm: x the reference's median gradient norm."""

    loss_pass: float
    loss_warn: float
    grad_norm_pass: float
    grad_norm_warn: float
    routing_pass: float | None = None
    routing_warn: float | None = None
    """Mixture-of-experts routing: largest fraction of tokens whose top-k expert set differs
    from the reference's in a compared step (None: not judged)."""


BandSource = Literal["measured", "table"]


class FidelityBand(BaseModel):
    """What a check's deviations are judged against, per compared step.

    `measured`: an honest low-precision run (the same training in the target dtype on the
    reference device) drifts from the reference by rounding alone; the pass band at step i is
    `k` x the largest honest deviation up to step i plus `floor`, the warn band `warn_factor`
    x the pass band. `table`: no honest run exists, the dtype's fixed tolerances
    (TOLERANCES) apply at every step. Units as the deviations: loss x the reference's loss at
    that step (final loss: x the reference's final loss), gradient norms x the reference's
    median norm."""

    source: BandSource
    honest: str | None = None
    """The honest run, e.g. `cpu:bf16` (None for the table)."""
    k: float | None = None
    warn_factor: float | None = None
    loss_floor: float | None = None
    grad_norm_floor: float | None = None
    loss_pass: list[float] = Field(default_factory=list)
    loss_warn: list[float] = Field(default_factory=list)
    grad_norm_pass: list[float] = Field(default_factory=list)
    grad_norm_warn: list[float] = Field(default_factory=list)
    group_grad_norm_pass: dict[str, list[float]] = Field(default_factory=dict)
    group_grad_norm_warn: dict[str, list[float]] = Field(default_factory=dict)
    final_loss_warn: float | None = None
    """The largest final-loss deviation (x the reference's final loss) that does not fail."""


class FidelityResult(BaseModel):
    """N training steps of one workload on the target and on a reference, compared."""

    workload: str
    workload_version: str = ""
    backend: str
    dtype: str
    preset: str
    batch: int | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    steps: int
    reference: str
    seed: int = 0
    note: str = ""
    """Why the check ran as it did (e.g. a smaller preset than the run's)."""

    target_loss: list[float | None] = Field(default_factory=list)
    reference_loss: list[float | None] = Field(default_factory=list)
    target_grad_norm: list[float | None] = Field(default_factory=list)
    reference_grad_norm: list[float | None] = Field(default_factory=list)
    """Per-step values; None marks a NaN/Inf (JSON has no NaN); a run stops at the first."""
    first_nonfinite_step: int | None = None
    """First step (0-based) whose loss or gradient norm on the target was NaN/Inf."""
    reference_first_nonfinite_step: int | None = None
    skipped_steps: list[int] = Field(default_factory=list)
    """fp16 steps the loss scaler skipped because gradients overflowed (by design)."""

    deterministic: bool | None = None
    """Two target runs gave bitwise-equal losses and gradient norms (None: not checked)."""
    determinism_max_abs_diff: float | None = None
    determinism_steps: int | None = None
    """How many leading steps the second target run repeated."""

    compared_steps: int | None = None
    """Leading steps compared one to one: at most 20, and only up to the first fp16 step the
    loss scaler skipped."""
    max_rel_loss_deviation: float | None = None
    """max over the compared steps of |target - reference| loss / the reference's loss at
    that step."""
    max_rel_grad_norm_deviation: float | None = None
    """max |target - reference| gradient norm / the reference's median gradient norm."""
    final_loss_ratio: float | None = None
    """Mean target loss over mean reference loss on the last tenth of the steps."""
    final_loss_deviation: float | None = None
    """|mean target - mean reference| loss on the last tenth / the mean reference loss there."""

    honest_loss: list[float | None] = Field(default_factory=list)
    honest_grad_norm: list[float | None] = Field(default_factory=list)
    """Per-step values of the honest low-precision run (empty when the band is the table)."""
    honest_loss_drift: float | None = None
    honest_grad_norm_drift: float | None = None
    """The honest run's max deviations from the reference over the compared steps."""
    honest_final_loss_deviation: float | None = None

    target_group_grad_norm: dict[str, list[float | None]] = Field(default_factory=dict)
    reference_group_grad_norm: dict[str, list[float | None]] = Field(default_factory=dict)
    """Per-step gradient norms of each parameter group (embeddings, attention, mlp, conv,
    norms, head; by module type and name)."""
    max_rel_group_grad_norm_deviation: dict[str, float] = Field(default_factory=dict)
    """Per group: max |target - reference| / the reference's median norm of that group."""
    honest_group_grad_norm: dict[str, list[float | None]] = Field(default_factory=dict)
    honest_group_grad_norm_drift: dict[str, float] = Field(default_factory=dict)

    band: FidelityBand | None = None
    """The per-step bands the deviations were judged against, and where they came from."""
    routing_match: list[float] = Field(default_factory=list)
    """Mixture-of-experts workloads, per step: the fraction of (layer, token) pairs whose
    top-k expert set on the target equals the reference's (same weights and batch at step 0;
    later steps start from each run's own weights). Empty for dense workloads."""
    target_expert_load: list[list[int]] = Field(default_factory=list)
    reference_expert_load: list[list[int]] = Field(default_factory=list)
    """Per step: token slots routed to each expert, summed over the MoE layers."""
    max_routing_mismatch: float | None = None
    """1 - the smallest routing match over the compared steps."""

    fp32_downcasts: list[str] = Field(default_factory=list)
    """Settings under which the target ran fp32 matmuls/convolutions in reduced precision
    (e.g. TF32), named in the reasons of a failed fp32 check."""

    tolerance: FidelityTolerance | None = None
    """The dtype's fixed table: the fallback band when no honest run exists."""
    verdict: FidelityVerdict
    reasons: list[str] = Field(default_factory=list)
    error: str | None = None
    """Why the check could not complete (exception, crash, timeout)."""
    duration_s: float | None = None

    @property
    def id(self) -> str:
        return f"{self.workload}/{self.dtype}/{self.preset} vs {self.reference}"


TOLERANCES: dict[str, FidelityTolerance] = {
    # The fallback band where no honest low-precision run exists. Loss x the reference's loss
    # at the step; the rest as FidelityTolerance. fp32: 10x the largest fp32-vs-fp64 drift
    # (other devices sum in other orders); bf16/fp16: 2.5x the largest honest drift over the
    # compared window; warn 2-10x pass (tests/perf/derive_fidelity_floors.py prints them).
    # Routing (MoE): largest fraction of tokens with another top-k expert set in a compared
    # step; fp32 pass allows a near-tie flip per hundred tokens; bf16/fp16 pass is 2.5x the
    # honest drift (up to 0.042), warn 2x pass.
    "fp32": FidelityTolerance(
        loss_pass=3e-4,
        loss_warn=3e-3,
        grad_norm_pass=3e-3,
        grad_norm_warn=3e-2,
        routing_pass=0.01,
        routing_warn=0.05,
    ),
    "bf16": FidelityTolerance(
        loss_pass=0.15,
        loss_warn=0.3,
        grad_norm_pass=0.5,
        grad_norm_warn=1.0,
        routing_pass=0.1,
        routing_warn=0.2,
    ),
    "fp16": FidelityTolerance(
        loss_pass=0.05,
        loss_warn=0.15,
        grad_norm_pass=0.3,
        grad_norm_warn=0.6,
        routing_pass=0.1,
        routing_warn=0.2,
    ),
}
TOLERANCES["fp64"] = TOLERANCES["fp32"]

BAND_K = 4.0
"""Pass band = BAND_K x the honest run's drift (running max up to the step) + the floor.
Chosen from the spread of the honest drift across seeds (docs/fidelity.md)."""

WARN_FACTOR = 3.0
"""Warn band = WARN_FACTOR x the pass band; beyond it the check fails."""


class BandFloor(BaseModel):
    """The smallest pass band of a dtype: loss x the reference's loss at the step (and the
    final loss x the reference's final loss), gradient norm x its median."""

    loss: float
    grad_norm: float


BAND_FLOORS: dict[str, BandFloor] = {
    # fp32: 10x the worst fp32-vs-fp64 drift (other devices sum in other orders).
    # bf16/fp16: the largest drift one step of honest rounding causes (step 0, any
    # workload), and never below fp32's. tests/perf/derive_fidelity_floors.py.
    "fp32": BandFloor(loss=3e-4, grad_norm=3e-3),
    "bf16": BandFloor(loss=6e-4, grad_norm=5e-3),
    "fp16": BandFloor(loss=3e-4, grad_norm=3e-3),
}
BAND_FLOORS["fp64"] = BAND_FLOORS["fp32"]
