"""`bench report`: the training-vs-inference answer for one or more systems, as report.md
(figures beside it) and a self-contained report.html.

Numbers come from harness.analysis.answer, figures from harness.report.figures, rendering and
escaping from harness.report.render.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydantic import BaseModel

from harness.analysis.answer import PENALTY_CAVEAT, PENALTY_NOT_READY, Answer, answer
from harness.analysis.endpoint import endpoint_rows
from harness.analysis.serving import serving_rows
from harness.report.endpoint import endpoint_section
from harness.report.figures import all_figures
from harness.report.render import Figure, Report, Section, Table, render_html, render_markdown
from harness.report.serving import claims_by_case, serving_section
from harness.results import convergence_judge as judge
from harness.results.fidelity import FidelityResult
from harness.results.schema import RunRecord
from harness.stats import DEFAULT_THRESHOLD
from harness.units import (
    format_bytes,
    format_number,
    format_percent,
    format_rate,
    format_seconds,
)

FIGURE_DIR = "figures"
PHASE_COLUMNS = ("forward", "backward", "optimizer", "communication", "zero_grad", "other")
"""The phases the report's table shows, in step order."""


class ReportPaths(BaseModel):
    markdown: Path
    html: Path
    figures: list[Path]


def _per_joule(value: float | None, throughput_unit: str) -> str:
    """Items per joule, the unit taken from the throughput's (`tokens/s` -> `tokens/J`)."""
    item = throughput_unit.removesuffix("/s")
    return format_rate(value, f"{item}/J" if item else "/J")


def _figures(figures: dict[str, Figure], *names: str) -> list[Figure]:
    return [figures[n] for n in names if n in figures]


def verdict_section(a: Answer) -> Section:
    table = Table(
        columns=["system", "label", "inference", "why", "training", "why"],
        rows=[
            [
                v.system.id,
                ", ".join(v.system.labels) or "-",
                v.inference.status,
                "; ".join(v.inference.reasons),
                v.training.status,
                "; ".join(v.training.reasons),
            ]
            for v in a.verdicts
        ],
    )
    return Section(
        title="Verdict",
        paragraphs=[
            "Inference-ready: every inference case ran. Training-ready: every training case "
            "ran, training follows the reference within its dtype's tolerance (fidelity), and "
            f"the training penalty's 95% CI lies below {PENALTY_CAVEAT:g} (a caveat when it "
            f"lies above, not ready above {PENALTY_NOT_READY:g}; undecided when the CI "
            "straddles a threshold that would change the verdict: more rounds decide it). "
            "Definitions: docs/answer.md and docs/fidelity.md."
        ],
        tables=[table],
    )


def _rounds_text(run: RunRecord) -> str:
    """How a run was measured: its rounds (the most any case took), their order's seed and,
    where the yardsticks were read, how steady the machine was (`_machine_text`)."""
    rounds = max((c.measurement.rounds for c in run.cases if c.measurement), default=1)
    seed = run.config.round_seed
    text = "1 round" if rounds <= 1 else f"{rounds} rounds"
    if rounds > 1 and seed is not None:
        text += f", seed {seed}"
    machine = _machine_text(run)
    return f"{text}; {machine}" if machine else text


def _machine_text(run: RunRecord) -> str:
    """How far the machine's speed moved during the run: for the yardstick that moved most,
    the ratio of the 90th to the 10th percentile of its readings over every case and round
    (`machine steady` within the default compare threshold). Empty without readings."""
    readings: dict[str, list[float]] = {}
    for case in run.cases:
        for name, values in (case.yardstick or {}).items():
            readings.setdefault(name, []).extend(values)
    spreads = {
        name: float(np.percentile(values, 90) / np.percentile(values, 10))
        for name, values in readings.items()
        if len(values) >= 2
    }
    if not spreads:
        return ""
    name, spread = max(spreads.items(), key=lambda item: item[1])
    if spread <= 1.0 + DEFAULT_THRESHOLD:
        return f"machine steady: yardsticks within {spread - 1.0:.0%} (p90/p10)"
    return f"machine moved: {name} yardstick {spread:.2f}x (p90/p10)"


def systems_section(records: list[RunRecord], a: Answer) -> Section:
    by_id = {r.run_id: r for r in records}
    rows = []
    for system in a.systems:
        runs = [by_id[i] for i in system.run_ids if i in by_id]
        last = runs[-1]
        peaks = ", ".join(
            f"{d} {format_rate(p.flops, 'FLOP/s')} ({p.source})" for d, p in last.peaks.items()
        )
        rows.append(
            [
                system.id,
                system.backend,
                system.device,
                ", ".join(system.labels) or "-",
                ", ".join(f"{r.run_id[:8]} ({r.status}; {_rounds_text(r)})" for r in runs),
                last.environment.torch_version,
                peaks or "-",
            ]
        )
    cols = ["system", "backend", "device", "labels", "runs", "torch", "peak FLOP/s for MFU"]
    return Section(title="Systems", tables=[Table(columns=cols, rows=rows)])


def train_infer_section(
    a: Answer, figures: dict[str, Figure], serves: dict[tuple[str, str, str], str] | None = None
) -> Section:
    """The training penalty per case; beside it, where the runs have scenario results, what
    the same system serves under load at the p99 targets."""
    serves = serves or {}
    rows = []
    for r in a.train_infer:
        low, high = r.penalty_ci or (None, None)
        ci = f" ({format_number(low)}-{format_number(high)})" if r.penalty_ci else ""
        rows.append(
            [
                r.system,
                r.workload,
                r.dtype,
                str(r.batch),
                r.preset,
                format_seconds(r.t_infer_s),
                format_seconds(r.t_train_s),
                format_number(r.time_ratio),
                format_number(r.flops_ratio),
                format_number(r.penalty) + ci,
                _effective_text(r.effective_penalty, r.effective_penalty_ci),
                format_rate(r.throughput_infer, r.throughput_unit),
                format_rate(r.throughput_train, r.throughput_unit),
                format_number(r.energy_penalty),
                _per_joule(r.items_per_joule_infer, r.throughput_unit),
            ]
        )
        if serves:
            rows[-1].append(serves.get((r.system, r.workload, r.dtype), "-"))
    cols = [
        "system", "workload", "dtype", "batch", "preset", "t infer", "t train",
        "time ratio", "FLOPs ratio", "training penalty (95% CI)",
        "effective penalty (x steps to target)", "infer throughput",
        "train throughput", "energy penalty", "infer per joule",
    ]  # fmt: skip
    if serves:
        cols.append("inference under load (scenarios)")
    return Section(
        title="Training vs inference",
        paragraphs=[
            "Training penalty = (t_train / t_infer) / (FLOPs_train / FLOPs_infer): 1.0 means "
            "backward and optimizer run as efficiently as the forward. Measured in rounds, the "
            "two modes alternate within each round and the penalty is the median of the "
            "per-round ratios; its CI comes from the variation between rounds (a paired "
            "bootstrap over rounds, then samples, and a t-interval), so a machine that drifts "
            "widens it. Single-round files: a bootstrap over the raw samples of both cases. "
            "Energy penalty = (E_train / E_infer) / "
            "(FLOPs_train / FLOPs_infer) from the joules per step of both cases; infer per "
            "joule = inference items (tokens, samples, images) per joule. '-' where the device "
            "gave no energy reading (the notes say why)."
        ]
        + ([] if rows else ["No workload has both an ok train and an ok infer case."]),
        tables=[Table(columns=cols, rows=rows)] if rows else [],
        figures=_figures(figures, "throughput.png", "penalty.png"),
    )


def phases_section(a: Answer, figures: dict[str, Figure]) -> Section:
    """Where the training penalty goes: the phase table, the sentences, the stacked bars."""
    if not a.phases:
        return Section(
            title="Where the training step's time goes",
            paragraphs=["No train case in these results has a phase breakdown."],
        )
    rows = []
    for r in a.phases:
        bandwidth = "-"
        if r.optimizer_bandwidth is not None:
            bandwidth = format_rate(r.optimizer_bandwidth, "B/s")
            if r.bandwidth_reference:
                share = format_percent(r.optimizer_bandwidth / r.bandwidth_reference)
                bandwidth += f" ({share} of {format_rate(r.bandwidth_reference, 'B/s')})"
        phases = r.phases_s
        rows.append(
            [
                r.system,
                r.workload,
                r.dtype,
                str(r.batch),
                format_seconds(r.t_infer_s),
                *(format_seconds(phases.get(n)) for n in PHASE_COLUMNS),
                format_percent(r.coverage),
                format_percent(r.headline_coverage),
                format_number(r.backward_forward),
                format_number(r.backward_flop_ratio),
                format_number(r.backward_penalty),
                bandwidth,
                r.excess_phase or "-",
            ]
        )
    cols = [
        "system", "workload", "dtype", "batch", "infer forward", *PHASE_COLUMNS,
        "coverage", "phases / headline step", "backward / forward", "FLOP ratio",
        "backward penalty", "optimizer bandwidth (of probe)", "excess goes to",
    ]  # fmt: skip
    notes = sorted(
        {f"{r.workload}: {r.optimizer_bytes_note}" for r in a.phases if r.optimizer_bytes_note}
    )
    sources = sorted({r.bandwidth_source for r in a.phases if r.bandwidth_source})
    attributions = sorted({r.attribution for r in a.phases if r.attribution})
    paragraphs = [
        "Each train case is timed again after its headline measurement, in instrumented "
        "iterations that stamp every phase with the backend's timer (device events on "
        "accelerators, the host clock on the CPU) and synchronize once per iteration. "
        "Coverage is how much of each instrumented step the phases account for. Backward "
        "penalty = (backward / forward time) / (backward / forward FLOPs), the FLOP ratio "
        "being FLOPs_train / FLOPs_infer - 1. The excess is the step beyond "
        "t_infer x FLOPs_train / FLOPs_infer: forward beyond t_infer, backward beyond "
        "t_infer x the FLOP ratio, every other phase whole.",
        *(r.sentence for r in a.phases),
    ]
    if notes:
        paragraphs.append("Optimizer bytes per step: " + "; ".join(notes) + ".")
    if sources:
        paragraphs.append("Optimizer bandwidth is compared with " + "; ".join(sources) + ".")
    paragraphs += [f"Communication: {text}." for text in attributions]
    tables = [Table(columns=cols, rows=rows)]
    if a.op_shifts:
        paragraphs.append(
            "Operators (bench run --profile) whose share of the step grows most from inference "
            "to training; an operator's forward and backward count together, the optimizer's "
            "operators as `optimizer`."
        )
        tables.append(op_shift_table(a))
    return Section(
        title="Where the training step's time goes",
        paragraphs=paragraphs,
        tables=tables,
        figures=_figures(figures, "phases.png"),
    )


def op_shift_table(a: Answer) -> Table:
    """One row per profiled workload: its top growing operators, infer share -> train share."""
    rows = [
        [
            r.system,
            r.workload,
            r.dtype,
            str(r.batch),
            f"{r.time_kind} ({r.note})" if r.note else r.time_kind,
            "; ".join(
                f"{s.op} {format_percent(s.infer_share)} -> {format_percent(s.train_share)}"
                for s in r.shifts
            )
            or "-",
        ]
        for r in a.op_shifts
    ]
    cols = ["system", "workload", "dtype", "batch", "time", "share infer -> train"]
    return Table(columns=cols, rows=rows)


def mfu_section(a: Answer, figures: dict[str, Figure]) -> Section:
    rows = [
        [r.system, r.workload, r.mode, r.dtype, str(r.batch), format_percent(r.mfu),
         format_rate(r.achieved_flops, "FLOP/s"), r.peak_source or "-"]
        for r in a.modes
    ]  # fmt: skip
    cols = ["system", "workload", "mode", "dtype", "batch", "MFU", "achieved", "peak used"]
    return Section(
        title="MFU per mode",
        paragraphs=["MFU = achieved FLOP/s / peak FLOP/s (the device's known spec, else the "
                    "best measured matmul probe of that dtype; '-' when neither exists). "
                    "Training cases use the sustained matmul rate (matmul sustain_s=...) when "
                    "the run measured one. 'peak used' names the peak of each row."],
        tables=[Table(columns=cols, rows=rows)] if rows else [],
        figures=_figures(figures, "mfu.png"),
    )  # fmt: skip


def memory_section(a: Answer, figures: dict[str, Figure]) -> Section:
    rows = []
    for r in a.train_infer:
        ratio = (
            format_number(r.memory_train_bytes / r.memory_infer_bytes)
            if r.memory_train_bytes and r.memory_infer_bytes
            else "-"
        )
        rows.append(
            [r.system, r.workload, r.dtype, str(r.batch),
             format_bytes(r.memory_infer_bytes, unit="MiB"),
             format_bytes(r.memory_train_bytes, unit="MiB"), ratio]
        )  # fmt: skip
    cols = ["system", "workload", "dtype", "batch", "peak infer", "peak train", "train/infer"]
    return Section(
        title="Peak memory",
        tables=[Table(columns=cols, rows=rows)] if rows else [],
        figures=_figures(figures, "memory.png"),
    )


def _band_text(r: FidelityResult) -> str:
    """'0.0012 / 0.03 (measured, k=4)': the pass band where the compared window ends."""
    band = r.band
    if band is None or not band.loss_pass or not band.grad_norm_pass:
        return "-"
    how = f"measured, k={band.k:g}" if band.source == "measured" else "table"
    return f"{format_number(band.loss_pass[-1])} / {format_number(band.grad_norm_pass[-1])} ({how})"


def _honest_text(r: FidelityResult) -> str:
    """'cpu:bf16 0.00078 / 0.00099', or '-' without an honest run."""
    if r.band is None or r.band.source != "measured":
        return "-"
    loss, norm = format_number(r.honest_loss_drift), format_number(r.honest_grad_norm_drift)
    return f"{r.band.honest} {loss} / {norm}"


def fidelity_section(a: Answer, figures: dict[str, Figure]) -> Section:
    rows = []
    for check in a.fidelity:
        r = check.result
        if r.deterministic is None:
            bitwise = "-"
        elif r.deterministic:
            bitwise = "yes"
        else:
            bitwise = f"no ({format_number(r.determinism_max_abs_diff)})"
        rows.append(
            [
                check.system, r.workload, r.dtype, r.preset, r.reference, str(r.steps),
                format_number(r.max_rel_loss_deviation),
                format_number(r.max_rel_grad_norm_deviation),
                _band_text(r), _honest_text(r),
                format_number(r.max_routing_mismatch),
                format_number(r.final_loss_ratio, 6),
                "-" if r.first_nonfinite_step is None else str(r.first_nonfinite_step),
                bitwise, r.verdict, "; ".join(r.reasons) or "-", r.note or "-",
            ]
        )  # fmt: skip
    cols = [
        "system", "workload", "dtype", "preset", "reference", "steps",
        "loss dev (x reference loss)",
        "grad-norm dev (x median)", "pass band at the last compared step (loss / grad norm)",
        "honest drift (loss / grad norm)", "routing mismatch (MoE)", "final loss ratio",
        "first NaN/Inf step", "bitwise repeatable", "verdict", "reasons", "note",
    ]  # fmt: skip
    return Section(
        title="Training fidelity",
        paragraphs=[
            "N training steps on the target and on the reference from identical initial "
            "weights and identical batches of real data. Loss deviations are fractions of the "
            "reference's loss at the step (the final loss: of its final loss); verdicts are "
            "those of the current bands. The pass band is measured in the run: "
            "k x the drift of an honest run (the same training in the target dtype on the "
            "reference device) plus a floor, per step; `table` marks checks judged against "
            "the fixed per-dtype tolerances instead (docs/fidelity.md). Routing mismatch "
            "(mixture-of-experts workloads): the largest fraction of tokens in a compared step "
            "whose top-k expert set differs from the reference's."
        ]
        + ([] if rows else ["No fidelity checks in these runs (bench run --fidelity)."]),
        tables=[Table(columns=cols, rows=rows)] if rows else [],
        figures=_figures(figures, "loss_curves.png"),
    )


def roofline_section(a: Answer, figures: dict[str, Figure]) -> Section:
    roofs = []
    for r in a.roofs:
        compute = ", ".join(
            f"{d} {format_rate(f, 'FLOP/s')}" for d, f in sorted(r.peak_flops.items())
        )
        sources = "; ".join(sorted(set(r.flops_source.values())))
        roofs.append(
            [r.system, compute or "-", format_rate(r.bandwidth, "B/s"), sources or "-",
             r.bandwidth_source or "-"]
        )  # fmt: skip
    points = [
        [p.system, p.workload, p.mode, p.dtype, str(p.batch),
         format_rate(p.tokens_per_s, "tokens/s"),
         format_number(p.intensity), format_rate(p.achieved_flops, "FLOP/s")]
        for p in a.roofline
    ]  # fmt: skip
    tables = [
        Table(columns=["system", "compute roof", "bandwidth roof", "compute from",
                       "bandwidth from"], rows=roofs)
    ]  # fmt: skip
    if points:
        tables.append(
            Table(columns=["system", "workload", "mode", "dtype", "batch", "tokens/s",
                           "FLOP/byte", "achieved"], rows=points)
        )  # fmt: skip
    return Section(
        title="LLM prefill vs decode on the roofline",
        paragraphs=[
            "Roofs: the best measured matmul FLOP/s per dtype and the best measured memory "
            "bandwidth. Arithmetic intensity = FLOPs per step / bytes per step, as the workload "
            "counts them (weights + KV cache + activations, docs/answer.md)."
        ],
        tables=tables,
        figures=_figures(figures, "roofline.png"),
    )


def build_report(records: list[RunRecord], warnings: list[str] | None = None) -> Report:
    """The whole report for `records` (several systems side by side)."""
    a = answer(records)
    figures = all_figures(a)
    serving = serving_rows(records)
    under_load = serving_section(serving)
    endpoints = endpoint_section(endpoint_rows(records))
    sections = [
        verdict_section(a),
        systems_section(records, a),
        train_infer_section(a, figures, claims_by_case(serving)),
        phases_section(a, figures),
        *([under_load] if under_load else []),
        *([endpoints] if endpoints else []),
        mfu_section(a, figures),
        memory_section(a, figures),
        fidelity_section(a, figures),
        *([convergence_section(a, figures)] if a.convergence else []),
        roofline_section(a, figures),
    ]
    notes = [*(warnings or []), *a.notes]
    if notes:
        sections.append(Section(title="Notes", paragraphs=notes))
    return Report(title="accelbench: is training as good as inference?", sections=sections)


def write_report(
    records: list[RunRecord], out: Path, warnings: list[str] | None = None
) -> ReportPaths:
    """Write report.md, figures/*.png and report.html into `out` (created if needed)."""
    report = build_report(records, warnings)
    figure_dir = out / FIGURE_DIR
    figure_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for section in report.sections:
        for figure in section.figures:
            path = figure_dir / figure.name
            path.write_bytes(figure.png)
            written.append(path)
    markdown = out / "report.md"
    markdown.write_text(render_markdown(report, FIGURE_DIR), encoding="utf-8")
    page = out / "report.html"
    page.write_text(render_html(report), encoding="utf-8")
    return ReportPaths(markdown=markdown, html=page, figures=written)


def _effective_text(value: float | None, ci: tuple[float, float] | None) -> str:
    """'2.70 (2.1-3.4)' or '-' (no converge case for the row)."""
    if value is None:
        return "-"
    return format_number(value) + (
        f" ({format_number(ci[0])}-{format_number(ci[1])})" if ci else ""
    )


def _steps_text(steps: list[int | None]) -> str:
    return ", ".join("-" if s is None else str(s) for s in steps)


CONVERGENCE_TEXT = (
    "Each seed trains on the device until its held-out eval loss reaches the target: "
    "the reference's (cpu:fp32) median eval loss over the same seeds at the target "
    "step. The band is the spread of the reference's (and, in low precision, the honest "
    "run's) steps-to-target, one eval interval wider on each side. Slower than the band "
    "fails with the steps ratio; faster is suspicious (MLPerf's RCP rule). Effective "
    "penalty = steps ratio x the step-time training penalty. Time and energy to target "
    "count the training steps only (evals excluded). docs/convergence.md."
)


def _joules_text(joules: float | None) -> str:
    return f"{format_number(joules)} J" if joules is not None else "-"


def convergence_section(a: Answer, figures: dict[str, Figure]) -> Section:
    """Converge cases: steps and time to the target with CIs, the effective penalty beside
    the step-time penalty, the verdict; and the table of stability events."""
    rows, events, telemetry, notes = [], [], [], []
    for row in a.convergence:
        c = row.result
        if c.energy_note and c.energy_note not in notes:
            notes.append(c.energy_note)
        for name, (count, low, mid, high) in judge.telemetry_summary(c).items():
            telemetry.append(
                [row.system, f"{row.workload}/{row.dtype}", name, str(count),
                 format_number(low), format_number(mid), format_number(high)]
            )  # fmt: skip
        ratio = "-"
        if c.steps_ratio is not None:
            ratio = format_number(c.steps_ratio)
            if c.steps_ratio_ci:
                ratio += (
                    f" ({format_number(c.steps_ratio_ci[0])}-{format_number(c.steps_ratio_ci[1])})"
                )
        rows.append(
            [
                row.system, row.workload, row.dtype, str(row.batch), row.preset,
                f"{c.target_loss:.4g} (step {c.target_step})", _steps_text(c.steps_to_target),
                _steps_text(c.reference_steps_to_target),
                f"{c.band.low}-{c.band.high}" if c.band else "-", ratio,
                format_seconds(judge.median_known(c.time_to_target_s)),
                _joules_text(c.energy_to_target_median_j),
                _effective_text(row.penalty, row.penalty_ci),
                _effective_text(row.effective_penalty, row.effective_penalty_ci),
                c.verdict, "; ".join(c.reasons),
            ]
        )  # fmt: skip
        for e in c.events:
            if e.run == "device":
                events.append(
                    [row.system, f"{row.workload}/{row.dtype}", str(e.seed), str(e.step), e.kind,
                     format_number(e.value)]
                )  # fmt: skip
    cols = [
        "system", "workload", "dtype", "batch", "preset", "target (eval loss)",
        "steps to target (device seeds)", "steps (reference seeds)", "band", "steps ratio (95% CI)",
        "time to target (median seed)", "energy to target (median seed)", "training penalty",
        "effective penalty", "verdict", "reasons",
    ]  # fmt: skip
    tables = [Table(columns=cols, rows=rows)] if rows else []
    if events:
        tables.append(
            Table(columns=["system", "case", "seed", "step", "event", "value"], rows=events[:200])
        )
    if telemetry:
        columns = ["system", "case", "telemetry (at each eval)", "samples", "min", "median", "max"]
        tables.append(Table(columns=columns, rows=telemetry))
    paragraphs = [CONVERGENCE_TEXT]
    if notes:
        paragraphs.append("Energy to target not metered: " + "; ".join(notes) + ".")
    return Section(
        title="Train to a target",
        paragraphs=paragraphs,
        tables=tables,
        figures=_figures(figures, "convergence.png"),
    )
