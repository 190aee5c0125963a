"""`bench report`: the training-vs-inference answer for one or more systems, as report.md
(figures beside it) and a self-contained report.html.

Numbers come from harness.analysis.answer, figures from harness.report.figures, rendering and
escaping from harness.report.render.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from harness.analysis.answer import PENALTY_CAVEAT, PENALTY_NOT_READY, Answer, answer
from harness.report.figures import all_figures
from harness.report.render import Figure, Report, Section, Table, render_html, render_markdown
from harness.results.schema import RunRecord

FIGURE_DIR = "figures"


class ReportPaths(BaseModel):
    markdown: Path
    html: Path
    figures: list[Path]


def _num(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}g}"


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if value >= scale:
            return f"{value / scale:.3g} {unit}"
    return f"{value / 1e-9:.3g} ns"


def _rate(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    for prefix, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}".strip()


def _mib(value: int | None) -> str:
    return "-" if value is None else f"{value / 2**20:.1f} MiB"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


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
            f"the training penalty stays below {PENALTY_CAVEAT:g} (caveat above it, not ready "
            f"above {PENALTY_NOT_READY:g}). Definitions: docs/answer.md and docs/fidelity.md."
        ],
        tables=[table],
    )


def systems_section(records: list[RunRecord], a: Answer) -> Section:
    by_id = {r.run_id: r for r in records}
    rows = []
    for system in a.systems:
        runs = [by_id[i] for i in system.run_ids if i in by_id]
        last = runs[-1]
        peaks = ", ".join(
            f"{d} {_rate(p.flops, 'FLOP/s')} ({p.source})" for d, p in last.peaks.items()
        )
        rows.append(
            [
                system.id,
                system.backend,
                system.device,
                ", ".join(system.labels) or "-",
                ", ".join(f"{r.run_id[:8]} ({r.status})" for r in runs),
                last.environment.torch_version,
                peaks or "-",
            ]
        )
    cols = ["system", "backend", "device", "labels", "runs", "torch", "peak FLOP/s for MFU"]
    return Section(title="Systems", tables=[Table(columns=cols, rows=rows)])


def train_infer_section(a: Answer, figures: dict[str, Figure]) -> Section:
    rows = []
    for r in a.train_infer:
        ci = f" ({_num(r.penalty_ci[0])}-{_num(r.penalty_ci[1])})" if r.penalty_ci else ""
        rows.append(
            [
                r.system,
                r.workload,
                r.dtype,
                str(r.batch),
                r.preset,
                _seconds(r.t_infer_s),
                _seconds(r.t_train_s),
                _num(r.time_ratio),
                _num(r.flops_ratio),
                _num(r.penalty) + ci,
                _rate(r.throughput_infer, r.throughput_unit),
                _rate(r.throughput_train, r.throughput_unit),
            ]
        )
    cols = [
        "system", "workload", "dtype", "batch", "preset", "t infer", "t train",
        "time ratio", "FLOPs ratio", "training penalty (95% CI)", "infer throughput",
        "train throughput",
    ]  # fmt: skip
    return Section(
        title="Training vs inference",
        paragraphs=[
            "Training penalty = (t_train / t_infer) / (FLOPs_train / FLOPs_infer): 1.0 means "
            "backward and optimizer run as efficiently as the forward. The CI is a bootstrap "
            "over the raw timing samples of both cases."
        ]
        + ([] if rows else ["No workload has both an ok train and an ok infer case."]),
        tables=[Table(columns=cols, rows=rows)] if rows else [],
        figures=_figures(figures, "throughput.png", "penalty.png"),
    )


def mfu_section(a: Answer, figures: dict[str, Figure]) -> Section:
    rows = [
        [r.system, r.workload, r.mode, r.dtype, str(r.batch), _pct(r.mfu),
         _rate(r.achieved_flops, "FLOP/s"), r.peak_source or "-"]
        for r in a.modes
    ]  # fmt: skip
    cols = ["system", "workload", "mode", "dtype", "batch", "MFU", "achieved", "peak used"]
    return Section(
        title="MFU per mode",
        paragraphs=["MFU = achieved FLOP/s / peak FLOP/s (the device's known spec, else the "
                    "best measured matmul probe of that dtype; '-' when neither exists)."],
        tables=[Table(columns=cols, rows=rows)] if rows else [],
        figures=_figures(figures, "mfu.png"),
    )  # fmt: skip


def memory_section(a: Answer, figures: dict[str, Figure]) -> Section:
    rows = []
    for r in a.train_infer:
        ratio = (
            _num(r.memory_train_bytes / r.memory_infer_bytes)
            if r.memory_train_bytes and r.memory_infer_bytes
            else "-"
        )
        rows.append(
            [r.system, r.workload, r.dtype, str(r.batch), _mib(r.memory_infer_bytes),
             _mib(r.memory_train_bytes), ratio]
        )  # fmt: skip
    cols = ["system", "workload", "dtype", "batch", "peak infer", "peak train", "train/infer"]
    return Section(
        title="Peak memory",
        tables=[Table(columns=cols, rows=rows)] if rows else [],
        figures=_figures(figures, "memory.png"),
    )


def fidelity_section(a: Answer, figures: dict[str, Figure]) -> Section:
    rows = []
    for check in a.fidelity:
        r = check.result
        bitwise = (
            "-"
            if r.deterministic is None
            else ("yes" if r.deterministic else f"no ({_num(r.determinism_max_abs_diff)})")
        )
        rows.append(
            [
                check.system, r.workload, r.dtype, r.preset, r.reference, str(r.steps),
                _num(r.max_rel_loss_deviation), _num(r.max_rel_grad_norm_deviation),
                _num(r.max_routing_mismatch), _num(r.final_loss_ratio, 6),
                "-" if r.first_nonfinite_step is None else str(r.first_nonfinite_step),
                bitwise, r.verdict, "; ".join(r.reasons) or "-", r.note or "-",
            ]
        )  # fmt: skip
    cols = [
        "system", "workload", "dtype", "preset", "reference", "steps", "loss dev (x initial loss)",
        "grad-norm dev (x median)", "routing mismatch (MoE)", "final loss ratio",
        "first NaN/Inf step", "bitwise repeatable", "verdict", "reasons", "note",
    ]  # fmt: skip
    return Section(
        title="Training fidelity",
        paragraphs=[
            "N training steps on the target and on the reference from identical initial "
            "weights and identical batches of real data; tolerances depend on the dtype "
            "(docs/fidelity.md). Routing mismatch (mixture-of-experts workloads): the largest "
            "fraction of tokens in a compared step whose top-k expert set differs from the "
            "reference's."
        ]
        + ([] if rows else ["No fidelity checks in these runs (bench run --fidelity)."]),
        tables=[Table(columns=cols, rows=rows)] if rows else [],
        figures=_figures(figures, "loss_curves.png"),
    )


def roofline_section(a: Answer, figures: dict[str, Figure]) -> Section:
    roofs = []
    for r in a.roofs:
        compute = ", ".join(f"{d} {_rate(f, 'FLOP/s')}" for d, f in sorted(r.peak_flops.items()))
        sources = "; ".join(sorted(set(r.flops_source.values())))
        roofs.append(
            [r.system, compute or "-", _rate(r.bandwidth, "B/s"), sources or "-",
             r.bandwidth_source or "-"]
        )  # fmt: skip
    points = [
        [p.system, p.workload, p.mode, p.dtype, str(p.batch), _rate(p.tokens_per_s, "tokens/s"),
         _num(p.intensity), _rate(p.achieved_flops, "FLOP/s")]
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
    sections = [
        verdict_section(a),
        systems_section(records, a),
        train_infer_section(a, figures),
        mfu_section(a, figures),
        memory_section(a, figures),
        fidelity_section(a, figures),
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
