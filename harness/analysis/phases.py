"""Where a training step's time goes: phase penalties from stored phase breakdowns.

Pure analysis over CaseResults (no torch, no I/O). For each workload with an ok train case
that has phases and an ok infer case at the same dtype, batch and preset:

- backward penalty = (backward time / forward time) / (backward FLOPs / forward FLOPs), the
  FLOP ratio being FLOPs_train / FLOPs_infer - 1 (~2 for matmul-dominated models);
- optimizer bandwidth = bytes the optimizer reads and writes (the workload's count, e.g.
  AdamW fp32: 4 tensors read + 3 written x 4 B x parameters) / optimizer time, against the
  run's bandwidth probe (or the device's spec);
- the excess: the train step beyond the FLOP-proportional time t_infer x FLOPs_train /
  FLOPs_infer, split per phase: forward beyond t_infer, backward beyond t_infer x FLOP ratio,
  and every other phase (optimizer, communication, zero_grad, copies, the unattributed rest)
  whole, since the penalty's FLOP count gives them no time. The phase with the largest
  excess is where the training penalty goes.
"""

from __future__ import annotations

from collections import defaultdict

from pydantic import BaseModel, Field

from harness.results.schema import PHASES, CaseResult
from harness.units import format_percent, format_seconds

OTHER = "other"
"""Step time no phase accounts for (Python, loss scaling, gaps between phases)."""


class PhaseRow(BaseModel):
    """The phase breakdown of one workload's train step next to its inference forward."""

    system: str
    workload: str
    dtype: str
    batch: int
    preset: str
    t_infer_s: float
    """Median inference forward (the headline infer case)."""
    t_train_s: float
    """Median training step (the headline train case)."""
    step_s: float
    """Median instrumented training step (the iterations the phases come from)."""
    phases_s: dict[str, float]
    """Median seconds per phase, `other` included (step_s minus the phases, never < 0)."""
    coverage: float
    """The breakdown's coverage: median over iterations of sum(phases) / step."""
    headline_coverage: float
    """sum(phases) / t_train_s: how the phases add up against the headline step time."""
    backward_forward: float | None = None
    backward_flop_ratio: float | None = None
    backward_penalty: float | None = None
    optimizer_bytes: float | None = None
    optimizer_bytes_note: str = ""
    optimizer_bandwidth: float | None = None
    bandwidth_reference: float | None = None
    bandwidth_source: str = ""
    excess_s: dict[str, float] = Field(default_factory=dict)
    """Seconds per phase beyond the FLOP-proportional time (see module docstring)."""
    excess_phase: str | None = None
    """The phase with the largest positive excess, or None when there is no excess."""
    attribution: str = ""
    sentence: str = ""


def _ok(case: CaseResult) -> bool:
    return case.status == "ok" and case.measurement is not None and case.measurement.n > 0


def phase_rows(
    system: str,
    cases: list[CaseResult],
    bandwidth: float | None = None,
    bandwidth_source: str = "",
) -> list[PhaseRow]:
    """One PhaseRow per ok train case with phases that has an ok infer case of the same
    pair key; `bandwidth` (B/s) is what the optimizer's achieved bandwidth is set against."""
    pairs: dict[str, dict[str, CaseResult]] = defaultdict(dict)
    for case in cases:
        if _ok(case) and case.key.mode in ("train", "infer"):
            pairs[case.key.pair_key()][case.key.mode] = case
    rows = []
    for pair in pairs.values():
        train, infer = pair.get("train"), pair.get("infer")
        if train is None or infer is None or train.phases is None:
            continue
        rows.append(_row(system, train, infer, bandwidth, bandwidth_source))
    return sorted(rows, key=lambda r: (r.workload, r.dtype, r.batch))


def _row(
    system: str,
    train: CaseResult,
    infer: CaseResult,
    bandwidth: float | None,
    bandwidth_source: str,
) -> PhaseRow:
    assert train.phases and train.measurement and infer.measurement
    breakdown = train.phases
    t_infer, t_train = infer.measurement.median, train.measurement.median
    timed = dict(breakdown.phases_s)
    phases = {**timed, OTHER: breakdown.other_s}
    row = PhaseRow(
        system=system,
        workload=train.key.workload,
        dtype=train.key.dtype,
        batch=train.key.batch,
        preset=train.key.preset,
        t_infer_s=t_infer,
        t_train_s=t_train,
        step_s=breakdown.step_s,
        phases_s=phases,
        coverage=breakdown.coverage,
        headline_coverage=sum(timed.values()) / t_train,
        optimizer_bytes=breakdown.optimizer_bytes,
        optimizer_bytes_note=breakdown.optimizer_bytes_note,
        bandwidth_reference=bandwidth,
        bandwidth_source=bandwidth_source,
        attribution=breakdown.attribution,
    )
    forward, backward = timed.get("forward"), timed.get("backward")
    if forward and backward is not None:
        row.backward_forward = backward / forward
    if train.flops_per_step and infer.flops_per_step:
        row.backward_flop_ratio = train.flops_per_step / infer.flops_per_step - 1.0
        if row.backward_forward is not None and row.backward_flop_ratio > 0:
            row.backward_penalty = row.backward_forward / row.backward_flop_ratio
    optimizer = timed.get("optimizer")
    if breakdown.optimizer_bytes and optimizer:
        row.optimizer_bandwidth = breakdown.optimizer_bytes / optimizer
    if row.backward_flop_ratio is not None:
        expected = {"forward": t_infer, "backward": t_infer * row.backward_flop_ratio}
        row.excess_s = {name: s - expected.get(name, 0.0) for name, s in phases.items()}
        worst = max(row.excess_s, key=lambda n: row.excess_s[n])
        row.excess_phase = worst if row.excess_s[worst] > 0 else None
    row.sentence = sentence(row)
    return row


def sentence(row: PhaseRow) -> str:
    """Where the excess of `row`'s training step goes, in one sentence."""
    where = f"{row.system}, {row.workload} {row.dtype} b{row.batch}"
    if row.backward_flop_ratio is None:
        return f"{where}: no FLOP count, so no FLOP-proportional time to compare the phases with."
    proportional = row.t_infer_s * (1.0 + row.backward_flop_ratio)
    head = (
        f"{where}: the training step takes {format_seconds(row.step_s)} against "
        f"{format_seconds(proportional)} FLOP-proportional to the inference forward"
    )
    total = sum(v for v in row.excess_s.values() if v > 0)
    if row.excess_phase is None or row.step_s <= proportional:
        return head + "; there is no excess to attribute."
    phase = row.excess_phase
    text = (
        f"{head}; most of the excess goes to {phase} ({format_seconds(row.excess_s[phase])}, "
        f"{format_percent(row.excess_s[phase] / total)} of it)"
    )
    if phase == "backward" and row.backward_forward is not None:
        text += (
            f": backward takes {row.backward_forward:.2f}x the forward against a FLOP ratio "
            f"of {row.backward_flop_ratio:.2f}"
        )
    elif phase == "optimizer" and row.optimizer_bandwidth and row.bandwidth_reference:
        text += (
            f": the optimizer moves its bytes at "
            f"{format_percent(row.optimizer_bandwidth / row.bandwidth_reference)} of the "
            "bandwidth probe"
        )
    return text + "."


class OpShift(BaseModel):
    """One operator's share of the profiled step, inference against training."""

    op: str
    """The forward operator (its forward and backward together), or `optimizer` /
    `zero_grad` for those phases' operators."""
    infer_share: float
    train_share: float

    @property
    def growth(self) -> float:
        return self.train_share - self.infer_share


class OpShiftRow(BaseModel):
    """The operators whose share grows most from inference to training, for one workload."""

    system: str
    workload: str
    dtype: str
    batch: int
    time_kind: str
    note: str = ""
    """Why the profile ranks host time where device time was expected (OpProfile.note)."""
    shifts: list[OpShift]


def _shares(case: CaseResult) -> dict[str, float]:
    assert case.profile is not None
    shares: dict[str, float] = defaultdict(float)
    for op in case.profile.ops:
        group = op.forward_op if op.phase in ("forward", "backward") else op.phase
        shares[group] += op.share
    return shares


def op_shift_rows(system: str, cases: list[CaseResult], top: int = 3) -> list[OpShiftRow]:
    """Per ok train/infer pair that both have a profile: the `top` operators (forward and
    backward of one operator counted together) whose share of the step grows most."""
    pairs: dict[str, dict[str, CaseResult]] = defaultdict(dict)
    for case in cases:
        if _ok(case) and case.key.mode in ("train", "infer") and case.profile is not None:
            pairs[case.key.pair_key()][case.key.mode] = case
    rows = []
    for pair in pairs.values():
        train, infer = pair.get("train"), pair.get("infer")
        if train is None or infer is None or train.profile is None:
            continue
        before, after = _shares(infer), _shares(train)
        shifts = [
            OpShift(op=op, infer_share=before.get(op, 0.0), train_share=after.get(op, 0.0))
            for op in set(before) | set(after)
        ]
        shifts.sort(key=lambda s: s.growth, reverse=True)
        rows.append(
            OpShiftRow(
                system=system,
                workload=train.key.workload,
                dtype=train.key.dtype,
                batch=train.key.batch,
                time_kind=train.profile.time_kind,
                note=train.profile.note,
                shifts=[s for s in shifts[:top] if s.growth > 0],
            )
        )
    return sorted(rows, key=lambda r: (r.workload, r.dtype, r.batch))


STACK_ORDER = (*PHASES, OTHER)
"""Phases in the order a stacked bar draws them (names outside it are drawn after)."""
