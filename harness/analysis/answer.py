"""The numbers that answer "is training as good as inference here?", from stored runs only.

Pure analysis over RunRecords (no torch, no I/O): train/infer time ratio and training penalty
with a bootstrap CI, MFU per mode, peak memory train vs infer, LLM prefill/decode on a
roofline of the measured matmul and bandwidth probes, fidelity, and a verdict per system.
Definitions and thresholds are documented in docs/answer.md.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Literal

from pydantic import BaseModel, Field

from harness import stats
from harness.analysis.device_facts import energy_not_measured
from harness.analysis.mfu import peaks
from harness.analysis.phases import OpShiftRow, PhaseRow, op_shift_rows, phase_rows
from harness.results import convergence_judge as converge
from harness.results.fidelity import FidelityResult
from harness.results.schema import CaseResult, Convergence, RunRecord

PENALTY_CAVEAT = 2.0
"""A training penalty above this flags training as 'caveats' (docs/answer.md)."""
PENALTY_NOT_READY = 4.0
"""A training penalty above this means training is 'not ready'."""

TRAIN_MODES = ("train",)
CONVERGE_MODES = ("converge",)
"""Train to a target (harness.convergence): judged by steps, not timed; neither train nor infer."""
LLM_MODES = ("prefill", "decode")
PROBES = ("matmul", "bandwidth", "allreduce")
"""Micro-probes: they build the roofline and the peaks, they are not models to judge."""

Readiness = Literal["ready", "caveats", "undecided", "not ready", "no data"]
"""`undecided`: a training penalty's CI straddles a threshold whose side would change the
status; more rounds decide it (docs/answer.md)."""


class System(BaseModel):
    """One backend on one device: what a column of the report is."""

    id: str
    backend: str
    device: str
    labels: list[str] = Field(default_factory=list)
    run_ids: list[str] = Field(default_factory=list)


class TrainInferRow(BaseModel):
    """Training against inference for one workload at matched dtype, batch and preset."""

    system: str
    workload: str
    dtype: str
    batch: int
    preset: str
    t_train_s: float
    t_infer_s: float
    time_ratio: float
    flops_ratio: float | None = None
    penalty: float | None = None
    """time_ratio / flops_ratio."""
    penalty_ci: tuple[float, float] | None = None
    """95% CI of the penalty: from the between-round variation of the per-round ratios when
    both cases share >= 2 rounds (stats.paired_round_ratio), else the independent bootstrap
    of the two sample sets."""
    paired_rounds: int = 0
    """Rounds in which both train and infer were measured; with >= 2, `time_ratio` is the
    median over those rounds of median(train in round r) / median(infer in round r)."""
    throughput_train: float | None = None
    throughput_infer: float | None = None
    throughput_unit: str = ""
    mfu_train: float | None = None
    mfu_infer: float | None = None
    memory_train_bytes: int | None = None
    memory_infer_bytes: int | None = None
    energy_train_j: float | None = None
    """Joules per training step."""
    energy_infer_j: float | None = None
    """Joules per inference step."""
    energy_penalty: float | None = None
    """(E_train / E_infer) / (FLOPs_train / FLOPs_infer), like the training penalty."""
    items_per_joule_infer: float | None = None
    """Inference items (tokens, samples, images) per joule."""
    effective_penalty: float | None = None
    """The converge case's steps ratio x `penalty` (ConvergenceRow), where both were run."""
    effective_penalty_ci: tuple[float, float] | None = None


class ModeRow(BaseModel):
    """MFU of one case (one mode), against the peak it was computed with."""

    system: str
    workload: str
    mode: str
    dtype: str
    batch: int
    preset: str
    mfu: float | None
    achieved_flops: float | None
    peak_source: str | None = None


class Roof(BaseModel):
    """A system's roofline: the peak FLOP/s per dtype that MFU uses (harness.analysis.mfu) and
    the best bandwidth (B/s)."""

    system: str
    peak_flops: dict[str, float] = Field(default_factory=dict)
    flops_source: dict[str, str] = Field(default_factory=dict)
    bandwidth: float | None = None
    bandwidth_source: str = ""


class RooflinePoint(BaseModel):
    """An LLM prefill or decode case placed on the roofline."""

    system: str
    workload: str
    mode: str
    dtype: str
    batch: int
    intensity: float
    """FLOPs per byte of memory traffic (flops_per_step / bytes)."""
    achieved_flops: float
    tokens_per_s: float | None
    bytes_per_step: float


class Verdict(BaseModel):
    status: Readiness
    reasons: list[str] = Field(default_factory=list)


class SystemVerdict(BaseModel):
    system: System
    inference: Verdict
    training: Verdict


class SystemFidelity(BaseModel):
    system: str
    result: FidelityResult


class Answer(BaseModel):
    systems: list[System]
    verdicts: list[SystemVerdict]
    train_infer: list[TrainInferRow]
    modes: list[ModeRow]
    roofs: list[Roof]
    roofline: list[RooflinePoint]
    fidelity: list[SystemFidelity]
    notes: list[str] = Field(default_factory=list)
    phases: list[PhaseRow] = Field(default_factory=list)
    """Train cases with a phase breakdown next to their inference forward."""
    op_shifts: list[OpShiftRow] = Field(default_factory=list)
    """Profiled train/infer pairs: the operators whose share grows most in training."""
    convergence: list[ConvergenceRow] = Field(default_factory=list)
    """Converge cases: steps to the target against the reference, the effective penalty."""


def _system_id(record: RunRecord) -> str:
    return f"{record.backend} / {record.device.name}"


def group_systems(records: list[RunRecord]) -> dict[str, tuple[System, list[RunRecord]]]:
    """Runs grouped by backend and device name, in order of first appearance."""
    groups: dict[str, tuple[System, list[RunRecord]]] = {}
    for record in sorted(records, key=lambda r: r.started_at):
        sid = _system_id(record)
        if sid not in groups:
            groups[sid] = (System(id=sid, backend=record.backend, device=record.device.name), [])
        system, runs = groups[sid]
        runs.append(record)
        system.run_ids.append(record.run_id)
        if record.label and record.label not in system.labels:
            system.labels.append(record.label)
    return groups


def latest_cases(runs: list[RunRecord]) -> list[CaseResult]:
    """Each case once (`CaseKey.history_key`): the latest run's result wins, also over an
    older version of the workload."""
    found: dict[str, CaseResult] = {}
    for record in runs:
        for case in record.cases:
            found[case.key.history_key()] = case
    return list(found.values())


def _is_model(case: CaseResult) -> bool:
    return case.key.workload not in PROBES


def _is_infer(case: CaseResult) -> bool:
    """Every mode of a model that is not a training step (infer, prefill, decode, sample...)."""
    return _is_model(case) and case.key.mode not in (*TRAIN_MODES, *CONVERGE_MODES)


def _ok(case: CaseResult) -> bool:
    return case.status == "ok" and case.measurement is not None and case.measurement.n > 0


def train_infer_rows(system: str, cases: list[CaseResult]) -> list[TrainInferRow]:
    """One row per case that has both an ok train and infer case (`CaseKey.pair_key`: same
    workload and version, dtype, batch, preset, params, compile and world size). With rounds
    shared by both cases the time ratio and penalty are paired per round (see
    TrainInferRow.paired_rounds); otherwise the ratio of the two medians."""
    by_key: dict[str, dict[str, CaseResult]] = defaultdict(dict)
    for case in cases:
        if _ok(case) and case.key.mode in ("train", "infer"):
            by_key[case.key.pair_key()][case.key.mode] = case
    rows = []
    for pair in by_key.values():
        if "train" not in pair or "infer" not in pair:
            continue
        train, infer = pair["train"], pair["infer"]
        assert train.measurement and infer.measurement
        t_train, t_infer = train.measurement.median, infer.measurement.median
        row = TrainInferRow(
            system=system,
            workload=train.key.workload,
            dtype=train.key.dtype,
            batch=train.key.batch,
            preset=train.key.preset,
            t_train_s=t_train,
            t_infer_s=t_infer,
            time_ratio=t_train / t_infer,
            throughput_train=train.throughput.value if train.throughput else None,
            throughput_infer=infer.throughput.value if infer.throughput else None,
            throughput_unit=train.throughput.unit if train.throughput else "",
            mfu_train=train.mfu,
            mfu_infer=infer.mfu,
            memory_train_bytes=train.peak_memory_bytes,
            memory_infer_bytes=infer.peak_memory_bytes,
        )
        if train.flops_per_step and infer.flops_per_step:
            row.flops_ratio = train.flops_per_step / infer.flops_per_step
            paired = stats.paired_round_ratio(
                train.measurement.samples_s,
                train.measurement.sample_rounds,
                infer.measurement.samples_s,
                infer.measurement.sample_rounds,
            )
            row.paired_rounds = paired.rounds
            if paired.rounds >= 2:
                row.time_ratio = paired.value
            row.penalty = row.time_ratio / row.flops_ratio
            low, high = paired.ci95
            row.penalty_ci = (low / row.flops_ratio, high / row.flops_ratio)
        add_energy(row, train, infer)
        rows.append(row)
    return sorted(rows, key=lambda r: (r.workload, r.dtype, r.batch))


def add_energy(row: TrainInferRow, train: CaseResult, infer: CaseResult) -> None:
    """Joules per step of both modes, the energy penalty (when the FLOPs ratio is known) and
    inference items per joule, where both cases measured energy."""
    if train.energy is None or infer.energy is None:
        return
    row.energy_train_j = train.energy.joules_per_step
    row.energy_infer_j = infer.energy.joules_per_step
    if row.flops_ratio and row.energy_infer_j > 0:
        row.energy_penalty = (row.energy_train_j / row.energy_infer_j) / row.flops_ratio
    if infer.energy.joules_per_item:
        row.items_per_joule_infer = 1.0 / infer.energy.joules_per_item


def mode_rows(system: str, cases: list[CaseResult]) -> list[ModeRow]:
    """MFU of every ok model case (probes excluded)."""
    rows = [
        ModeRow(
            system=system,
            workload=c.key.workload,
            mode=c.key.mode,
            dtype=c.key.dtype,
            batch=c.key.batch,
            preset=c.key.preset,
            mfu=c.mfu,
            achieved_flops=c.achieved_flops,
            peak_source=c.peak_flops_source,
        )
        for c in cases
        if _ok(c) and _is_model(c)
    ]
    return sorted(rows, key=lambda r: (r.workload, r.dtype, r.mode))


def roof(system: str, runs: list[RunRecord], cases: list[CaseResult]) -> Roof:
    """The compute roof per dtype by the rule MFU uses (`harness.analysis.mfu.peaks`: the
    device's known spec, else the best big-enough matmul probe), and the best measured
    bandwidth, else the device's known bandwidth (the sources say which)."""
    device = runs[-1].device
    out = Roof(system=system)
    for dtype, peak in peaks(cases, device).items():
        out.peak_flops[dtype] = peak.flops
        out.flops_source[dtype] = peak.source
    for c in cases:
        bandwidth = c.achieved_bandwidth or 0.0
        if _ok(c) and c.key.workload == "bandwidth" and bandwidth > (out.bandwidth or 0.0):
            out.bandwidth = c.achieved_bandwidth
            out.bandwidth_source = f"measured: bandwidth ({c.key.id})"
    if out.bandwidth is None and device.peak_bandwidth:
        out.bandwidth = device.peak_bandwidth
        out.bandwidth_source = f"spec: {device.peak_sources.get('bandwidth') or device.peak_source}"
    return out


def roofline_points(system: str, cases: list[CaseResult]) -> list[RooflinePoint]:
    """Every ok prefill/decode case with FLOPs, at its arithmetic intensity."""
    points = []
    for c in cases:
        if not (_ok(c) and c.key.mode in LLM_MODES and c.achieved_flops and c.flops_per_step):
            continue
        moved = c.bytes_per_step
        if not moved:
            continue
        points.append(
            RooflinePoint(
                system=system,
                workload=c.key.workload,
                mode=c.key.mode,
                dtype=c.key.dtype,
                batch=c.key.batch,
                intensity=c.flops_per_step / moved,
                achieved_flops=c.achieved_flops,
                tokens_per_s=c.throughput.value if c.throughput else None,
                bytes_per_step=moved,
            )
        )
    return points


def _failures(cases: list[CaseResult]) -> list[str]:
    out = []
    for c in cases:
        if c.status == "failed":
            kind = c.error.kind if c.error else "failed"
            message = c.error.message if c.error else ""
            out.append(f"{c.key.id} failed ({kind}): {message[:200]}")
    return out


def _unsupported(cases: list[CaseResult]) -> list[str]:
    return sorted({c.key.dtype for c in cases if c.status == "unsupported"})


def inference_verdict(cases: list[CaseResult]) -> Verdict:
    """Ready when every inference case ran; not ready when one failed; caveats for dtypes
    the backend does not support."""
    mine = [c for c in cases if _is_infer(c)]
    if not mine:
        return Verdict(status="no data", reasons=["no inference cases were run"])
    reasons = _failures(mine)
    if reasons:
        return Verdict(status="not ready", reasons=reasons)
    unsupported = _unsupported(mine)
    if unsupported:
        return Verdict(
            status="caveats",
            reasons=[f"unsupported dtype(s) for inference: {', '.join(unsupported)}"],
        )
    ok = sum(1 for c in mine if _ok(c))
    return Verdict(status="ready", reasons=[f"all {ok} inference cases ran"])


def training_only_fallbacks(cases: list[CaseResult]) -> list[str]:
    """One caveat per workload whose training steps ran operators on the host that its
    inference steps did not (CaseResult.host_fallbacks), naming the operators."""
    infer: dict[str, set[str]] = defaultdict(set)
    train: dict[str, set[str]] = defaultdict(set)
    for case in cases:
        if _is_model(case) and case.host_fallbacks:
            side = train if case.key.mode in TRAIN_MODES else infer
            side[case.key.workload].update(case.host_fallbacks)
    caveats = []
    for workload in sorted(train):
        only = sorted(train[workload] - infer[workload])
        if only:
            caveats.append(
                f"{workload} training runs operator(s) on the host (CPU fallback) that "
                f"inference does not: {', '.join(only)}"
            )
    return caveats


def judge_penalty(row: TrainInferRow) -> tuple[stats.ThresholdSide, float, str] | None:
    """(side, threshold, reason) of a row's training penalty against the thresholds
    (`stats.threshold_side` on its 95% CI, the point estimate where it has none), the highest
    threshold first: ("above", 4, ...) , ("undecided", 4, ...), ("above", 2, ...),
    ("undecided", 2, ...), or ("within", 2, "") below both; None without a penalty."""
    if row.penalty is None:
        return None
    where = f"{row.workload}/{row.dtype}/b{row.batch}"
    low, high = row.penalty_ci or (row.penalty, row.penalty)
    ci_text = f" (CI {low:.2f}-{high:.2f})" if row.penalty_ci else ""
    for threshold in (PENALTY_NOT_READY, PENALTY_CAVEAT):
        side = stats.threshold_side((low, high), threshold)
        if side == "above":
            text = f"training penalty {row.penalty:.2f}{ci_text} for {where} is above {threshold:g}"
            return side, threshold, text
        if side == "undecided":
            text = (
                f"training penalty {row.penalty:.2f} for {where} is undecided: CI "
                f"{low:.2f}-{high:.2f} straddles {threshold:g}; more rounds (--rounds) decide it"
            )
            return side, threshold, text
    return "within", PENALTY_CAVEAT, ""


def training_verdict(
    cases: list[CaseResult], rows: list[TrainInferRow], fidelity: list[FidelityResult]
) -> Verdict:
    """Not ready for a failed training case, a failed fidelity check or a penalty whose CI
    lies above PENALTY_NOT_READY; caveats for a fidelity warning, no fidelity check, an
    unsupported dtype or a penalty whose CI lies above PENALTY_CAVEAT; undecided where a
    penalty's CI straddles a threshold and its side would change the status (one straddling
    PENALTY_NOT_READY, or one straddling PENALTY_CAVEAT with no other caveat); else ready.
    Reasons name every undecided penalty, whatever the status."""
    mine = [c for c in cases if _is_model(c) and c.key.mode in TRAIN_MODES]
    if not mine and not fidelity:
        return Verdict(status="no data", reasons=["no training cases were run"])
    blocking = _failures(mine)
    caveats: list[str] = []
    for f in fidelity:
        text = f"fidelity {f.verdict} for {f.id}" + (
            f": {'; '.join(f.reasons)}" if f.reasons else ""
        )
        if f.verdict == "fail":
            blocking.append(text)
        elif f.verdict == "warn":
            caveats.append(text)
    if not fidelity:
        caveats.append("training fidelity was not checked (bench run --fidelity)")
    undecided: dict[float, list[str]] = {PENALTY_CAVEAT: [], PENALTY_NOT_READY: []}
    for row in rows:
        judged = judge_penalty(row)
        if judged is None:
            continue
        kind, threshold, text = judged
        if kind == "above":
            (blocking if threshold == PENALTY_NOT_READY else caveats).append(text)
        elif kind == "undecided":
            undecided[threshold].append(text)
    unsupported = _unsupported(mine)
    if unsupported:
        caveats.append(f"unsupported dtype(s) for training: {', '.join(unsupported)}")
    caveats += training_only_fallbacks(cases)
    open_questions = undecided[PENALTY_NOT_READY] + undecided[PENALTY_CAVEAT]
    if blocking:
        return Verdict(status="not ready", reasons=blocking + caveats + open_questions)
    if undecided[PENALTY_NOT_READY] or (undecided[PENALTY_CAVEAT] and not caveats):
        return Verdict(status="undecided", reasons=open_questions + caveats)
    if caveats:
        return Verdict(status="caveats", reasons=caveats + open_questions)
    passed = sum(1 for f in fidelity if f.verdict == "pass")
    worst = max((r.penalty for r in rows if r.penalty is not None), default=None)
    text = f"all {len(mine)} training cases ran; {passed} fidelity check(s) passed"
    if worst is not None:
        text += f"; worst training penalty {worst:.2f}"
    return Verdict(status="ready", reasons=[text])


def trend_notes(cases: list[CaseResult]) -> list[str]:
    """One line per case whose samples trend within rounds (`CaseResult.trend` flagged): its
    step time moves with the state the step leaves behind, so its figures depend on when they
    were taken; the line gives the change over a round, Kendall's tau and the named cause."""
    lines = []
    for case in cases:
        trend = case.trend
        if trend is None or not trend.flagged:
            continue
        direction = "grows" if trend.change > 0 else "shrinks"
        line = (
            f"{case.key.id}: step time {direction} {abs(trend.change):.0%} over a round "
            f"(Kendall tau {trend.tau:.2f}, p {trend.p_value:.1g}; Theil-Sen slope "
            f"{trend.slope:+.2%} of the median per sample)"
        )
        lines.append(f"{line}: {trend.cause}" if trend.cause else line)
    return lines


def answer(records: list[RunRecord]) -> Answer:
    """Everything the report shows, per system (backend and device), from `records`."""
    systems, verdicts, rows, modes, roofs, points, fidelity = [], [], [], [], [], [], []
    convergence: list[ConvergenceRow] = []
    notes: list[str] = []
    phase_list: list[PhaseRow] = []
    shifts: list[OpShiftRow] = []
    for sid, (system, runs) in group_systems(records).items():
        cases = latest_cases(runs)
        checks = [f for r in runs for f in r.fidelity]
        mine = train_infer_rows(sid, cases)
        systems.append(system)
        rows += mine
        modes += mode_rows(sid, cases)
        system_roof = roof(sid, runs, cases)
        roofs.append(system_roof)
        phase_list += phase_rows(sid, cases, system_roof.bandwidth, system_roof.bandwidth_source)
        shifts += op_shift_rows(sid, cases)
        points += roofline_points(sid, cases)
        fidelity += [SystemFidelity(system=sid, result=f) for f in checks]
        converged = convergence_rows(sid, cases, mine)
        convergence += converged
        training = training_verdict(cases, mine, checks)
        verdicts.append(
            SystemVerdict(
                system=system,
                inference=inference_verdict(cases),
                training=convergence_verdict(training, converged, cases),
            )
        )
        over = [c for c in cases if _ok(c) and _is_model(c) and c.mfu_status == "above_100"]
        if over:
            notes.append(
                f"{sid}: {len(over)} case(s) exceed 100% MFU: the peak they are measured "
                f"against ({over[0].peak_flops_source}) underestimates the device, so MFU is "
                "not reported there"
            )
        notes += [f"{sid}: {line}" for line in energy_not_measured(cases)]
        notes += [f"{sid}: {line}" for line in trend_notes(cases)]
        if any(r.status != "complete" for r in runs):
            notes.append(f"{sid}: some runs are incomplete (interrupted); figures may be partial")
    return Answer(
        systems=systems,
        verdicts=verdicts,
        train_infer=rows,
        modes=modes,
        roofs=roofs,
        roofline=points,
        fidelity=fidelity,
        notes=notes,
        phases=phase_list,
        op_shifts=shifts,
        convergence=convergence,
    )


# --- Train to a target (converge cases) ---------------------------------------------------


class ConvergenceRow(BaseModel):
    """One converge case: steps to the target against the reference's, and the effective
    training penalty (steps ratio x step-time penalty of the same workload, dtype and batch
    in the same answer, where its train and infer cases were run)."""

    system: str
    workload: str
    dtype: str
    batch: int
    preset: str
    result: Convergence
    penalty: float | None = None
    penalty_ci: tuple[float, float] | None = None
    effective_penalty: float | None = None
    effective_penalty_ci: tuple[float, float] | None = None


def convergence_rows(
    system: str, cases: list[CaseResult], rows: list[TrainInferRow]
) -> list[ConvergenceRow]:
    """A row per ok converge case, its effective penalty from the matching train/infer row
    (same workload, dtype, batch, preset), which also gets the effective penalty."""
    out: list[ConvergenceRow] = []
    for case in cases:
        c = case.convergence
        if case.key.mode not in CONVERGE_MODES or c is None:
            continue
        key = case.key
        row = ConvergenceRow(
            system=system,
            workload=key.workload,
            dtype=key.dtype,
            batch=key.batch,
            preset=key.preset,
            result=c,
        )
        match = next(
            (
                r
                for r in rows
                if (r.workload, r.dtype, r.batch, r.preset)
                == (key.workload, key.dtype, key.batch, key.preset)
                and r.penalty is not None
            ),
            None,
        )
        if match is not None and match.penalty is not None:
            effective = converge.effective_penalty(c, match.penalty, match.penalty_ci)
            row.penalty, row.penalty_ci = match.penalty, match.penalty_ci
            if effective is not None:
                row.effective_penalty, row.effective_penalty_ci = effective
                match.effective_penalty, match.effective_penalty_ci = effective
        out.append(row)
    return out


def convergence_verdict(
    training: Verdict, rows: list[ConvergenceRow], cases: list[CaseResult]
) -> Verdict:
    """The training verdict with the converge cases folded in: a case that is slow, not
    reached, unstable or failed (or could not run) makes training not ready, with the steps
    ratio in the reason; one that converges faster than the band is a caveat."""
    blocking: list[str] = []
    caveats: list[str] = []
    for case in cases:
        if case.key.mode in CONVERGE_MODES and case.status == "failed":
            message = case.error.message if case.error else "failed"
            blocking.append(f"converge {case.key.id} did not complete: {message}")
    for row in rows:
        c = row.result
        where = f"{row.workload}/{row.dtype}/b{row.batch}"
        ratio = f"{c.steps_ratio:.2f}x the steps" if c.steps_ratio is not None else "more steps"
        effective = (
            f" (effective penalty {row.effective_penalty:.2f})"
            if row.effective_penalty is not None
            else ""
        )
        if c.verdict in ("slow", "not_reached"):
            blocking.append(
                f"not training-ready: {where} needs {ratio} of the reference to reach eval loss "
                f"{c.target_loss:.4g}{effective}: {'; '.join(c.reasons)}"
            )
        elif c.verdict in ("unstable", "failed"):
            blocking.append(f"converge {c.verdict} for {where}: {'; '.join(c.reasons)}")
        elif c.verdict == "fast":
            caveats.append(f"converge {where}: {'; '.join(c.reasons)}")
    if not blocking and not caveats:
        if rows and training.status == "no data":
            return Verdict(
                status="ready",
                reasons=[f"{len(rows)} converge case(s) reached the target within the band"],
            )
        return training
    if blocking:
        return Verdict(status="not ready", reasons=blocking + training.reasons)
    if training.status in ("not ready",):
        return Verdict(status=training.status, reasons=training.reasons + caveats)
    return Verdict(status="caveats", reasons=caveats + [r for r in training.reasons])


Answer.model_rebuild()
