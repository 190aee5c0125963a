"""The report's figures (matplotlib, Agg backend) as PNG bytes, from an Answer.

Every figure has a title, axes labelled with units and a legend. Figures are made by
`harness.report.mpl.literal_figure`, so text from results files is never read as mathtext;
`plot_text` keeps it on one short line. The train-vs-infer throughput bars here are the
report's own; `bench plot` has its own figures.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from harness.analysis.answer import PENALTY_CAVEAT, PENALTY_NOT_READY, Answer
from harness.analysis.phases import STACK_ORDER
from harness.report.mpl import literal_figure, log_axes, log_axis, plot_text
from harness.report.render import Figure
from harness.results.fidelity import FidelityResult
from harness.results.fidelity_judge import loss_deviations
from harness.units import time_unit

MAX_LOSS_PANELS = 12
MAX_PHASE_PANELS = 16


@contextmanager
def _figure(name: str, caption: str, out: list[Figure], **kwargs: Any) -> Iterator[Any]:
    """A figure for the block to draw on, appended to `out` as PNG when the block ends."""
    with literal_figure(**kwargs) as fig:
        yield fig
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
        out.append(Figure(name=name, caption=caption, png=buffer.getvalue()))


def _grouped_bars(ax: Any, groups: list[str], series: dict[str, list[float]], **kw: Any) -> None:
    """Bars of several series side by side for each group label."""
    width = 0.8 / max(len(series), 1)
    for i, (name, values) in enumerate(series.items()):
        xs = [g + (i - (len(series) - 1) / 2) * width for g in range(len(groups))]
        errors = kw.get("errors", {}).get(name)
        ax.bar(xs, values, width, label=plot_text(name), yerr=errors, capsize=3 if errors else 0)
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels([plot_text(g, 36) for g in groups], rotation=30, ha="right")
    top = max((v for values in series.values() for v in values), default=0.0)
    if top > 0:
        ax.set_ylim(0, top * 1.35)  # room for the legend above the bars


def throughput_figure(answer: Answer, out: list[Figure]) -> None:
    """Train vs infer throughput, one panel per workload (its own unit)."""
    workloads = sorted({r.workload for r in answer.train_infer})
    if not workloads:
        return
    caption = "Training vs inference throughput at matched dtype and batch"
    with _figure("throughput.png", caption, out, figsize=(5 * len(workloads), 5)) as fig:
        for i, workload in enumerate(workloads, 1):
            ax = fig.add_subplot(1, len(workloads), i)
            rows = [r for r in answer.train_infer if r.workload == workload]
            groups = [f"{r.system} {r.dtype} b{r.batch}" for r in rows]
            series = {
                "train": [r.throughput_train or 0.0 for r in rows],
                "infer": [r.throughput_infer or 0.0 for r in rows],
            }
            _grouped_bars(ax, groups, series)
            ax.set_title(plot_text(workload))
            ax.set_ylabel(f"throughput ({plot_text(rows[0].throughput_unit or 'items/s')})")
            ax.set_xlabel("system, dtype, batch")
            ax.legend(loc="upper center", ncols=2)
        fig.suptitle("Train vs infer throughput (higher is better)")


def penalty_figure(answer: Answer, out: list[Figure]) -> None:
    """Training penalty with its 95% CI per workload/dtype/batch, one bar per system."""
    rows = [r for r in answer.train_infer if r.penalty is not None]
    if not rows:
        return
    groups = sorted({f"{r.workload} {r.dtype} b{r.batch}" for r in rows})
    systems = [s.id for s in answer.systems]
    series: dict[str, list[float]] = {}
    errors: dict[str, list[list[float]]] = {}
    for system in systems:
        values, low, high = [], [], []
        for group in groups:
            match = [
                r
                for r in rows
                if r.system == system and f"{r.workload} {r.dtype} b{r.batch}" == group
            ]
            value = match[0].penalty if match else 0.0
            ci = match[0].penalty_ci if match and match[0].penalty_ci else (value, value)
            values.append(value or 0.0)
            low.append(max((value or 0.0) - ci[0], 0.0))
            high.append(max(ci[1] - (value or 0.0), 0.0))
        series[system] = values
        errors[system] = [low, high]
    caption = "Training penalty = (t_train / t_infer) / (FLOPs_train / FLOPs_infer), 95% CI"
    with _figure("penalty.png", caption, out, figsize=(max(6, 1.6 * len(groups) + 3), 4.5)) as fig:
        ax = fig.add_subplot(1, 1, 1)
        _grouped_bars(ax, groups, series, errors=errors)
        ax.axhline(
            1.0, color="green", linestyle="--", label="1.0: backward as efficient as forward"
        )
        ax.axhline(
            PENALTY_CAVEAT, color="orange", linestyle=":", label=f"{PENALTY_CAVEAT:g}: caveat"
        )
        ax.axhline(
            PENALTY_NOT_READY, color="red", linestyle=":", label=f"{PENALTY_NOT_READY:g}: not ready"
        )
        ax.set_ylim(0, max(ax.get_ylim()[1], PENALTY_NOT_READY * 1.15))  # every line visible
        ax.set_title("Training penalty per workload (lower is better; error bars: 95% CI)")
        ax.set_ylabel("training penalty (ratio, dimensionless)")
        ax.set_xlabel("workload, dtype, batch")
        ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1))


def phases_figure(answer: Answer, out: list[Figure]) -> None:
    """One panel per workload/dtype/batch and system (its own time scale): the training step
    stacked by phase (forward, backward, optimizer, communication, zero_grad, other) next to
    the inference forward, and the FLOP-proportional training time as a dashed line."""
    rows = answer.phases[:MAX_PHASE_PANELS]
    if not rows:
        return
    names = [n for n in STACK_ORDER if any(r.phases_s.get(n) for r in rows)]
    names += sorted({n for r in rows for n in r.phases_s} - set(names) - set(STACK_ORDER))
    colors = dict(zip(names, _palette(len(names)), strict=True))
    columns = min(len(rows), 4)
    lines = -(-len(rows) // columns)
    caption = (
        "Training step by phase (instrumented iterations) next to the inference forward; "
        "dashed: the FLOP-proportional training time t_infer x FLOPs_train / FLOPs_infer"
    )
    size = (3.2 * columns + 2.5, 3.6 * lines)
    with _figure("phases.png", caption, out, figsize=size) as fig:
        for i, r in enumerate(rows, 1):
            ax = fig.add_subplot(lines, columns, i)
            unit, scale = time_unit(max(r.step_s, r.t_infer_s), micro="µs")
            bottom = 0.0
            for name in names:
                height = r.phases_s.get(name, 0.0) / scale
                ax.bar(0, height, 0.6, bottom=bottom, color=colors[name], label=f"train: {name}")
                bottom += height
            ax.bar(1, r.t_infer_s / scale, 0.6, color="lightgray", edgecolor="black",
                   hatch="//", label="infer: forward")  # fmt: skip
            if r.backward_flop_ratio is not None:
                expected = r.t_infer_s * (1.0 + r.backward_flop_ratio) / scale
                ax.hlines(expected, -0.35, 0.35, colors="black", linestyles="dashed",
                          label="train, FLOP-proportional")  # fmt: skip
            ax.set_xticks([0, 1])
            ax.set_xticklabels(["train", "infer"])
            ax.set_ylabel(f"time per step ({unit})")
            ax.set_title(plot_text(f"{r.workload} {r.dtype} b{r.batch}"), fontsize="medium")
            ax.set_xlabel(plot_text(r.system, 36), fontsize="small")
        handles, labels = fig.axes[0].get_legend_handles_labels()
        fig.legend(handles, labels, fontsize="small", loc="outside right upper")
        fig.suptitle("Where the training step's time goes")


def _palette(count: int) -> list[Any]:
    """`count` distinct colors from matplotlib's qualitative tab10 map."""
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return [cmap(i % 10) for i in range(count)]


def mfu_figure(answer: Answer, out: list[Figure]) -> None:
    """MFU per mode, per workload/dtype, one bar per system and mode."""
    rows = [r for r in answer.modes if r.mfu is not None]
    if not rows:
        return
    groups = sorted({f"{r.workload} {r.dtype} b{r.batch}" for r in rows})
    series: dict[str, list[float]] = {}
    for system in [s.id for s in answer.systems]:
        present = {r.mode for r in rows}
        for mode in [m for m in ("infer", "train", "prefill", "decode") if m in present]:
            values = []
            for group in groups:
                match = [
                    r.mfu
                    for r in rows
                    if r.system == system
                    and r.mode == mode
                    and f"{r.workload} {r.dtype} b{r.batch}" == group
                ]
                values.append(100.0 * (match[0] or 0.0) if match else 0.0)
            if any(values):
                series[f"{system}: {mode}"] = values
    caption = "Model FLOPs utilisation per mode against the peak (spec or measured matmul)"
    with _figure("mfu.png", caption, out, figsize=(max(6, 1.8 * len(groups) + 3), 4.5)) as fig:
        ax = fig.add_subplot(1, 1, 1)
        _grouped_bars(ax, groups, series)
        ax.set_title("MFU per mode (higher is better)")
        ax.set_ylabel("MFU (% of peak FLOP/s)")
        ax.set_xlabel("workload, dtype, batch")
        ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1))


def memory_figure(answer: Answer, out: list[Figure]) -> None:
    """Peak memory of training vs inference per workload/dtype/batch and system."""
    rows = [r for r in answer.train_infer if r.memory_train_bytes or r.memory_infer_bytes]
    if not rows:
        return
    groups = [f"{r.system} {r.workload} {r.dtype} b{r.batch}" for r in rows]
    series = {
        "train": [(r.memory_train_bytes or 0) / 2**20 for r in rows],
        "infer": [(r.memory_infer_bytes or 0) / 2**20 for r in rows],
    }
    caption = "Peak memory during training vs inference"
    with _figure("memory.png", caption, out, figsize=(max(6, 1.2 * len(groups) + 3), 4.5)) as fig:
        ax = fig.add_subplot(1, 1, 1)
        _grouped_bars(ax, groups, series)
        ax.set_title("Peak memory: train vs infer")
        ax.set_ylabel("peak memory (MiB)")
        ax.set_xlabel("system, workload, dtype, batch")
        ax.legend(loc="upper center", ncols=2)


def _shade_band(ax: Any, r: FidelityResult) -> None:
    """The loss pass and warn bands around the reference, over the compared steps (band
    values are fractions of the reference's loss at each step)."""
    band = r.band
    if band is None or not r.reference_loss:
        return
    points = [
        (s, v, p * abs(v), w * abs(v))
        for s, (v, p, w) in enumerate(
            zip(r.reference_loss, band.loss_pass, band.loss_warn, strict=False)
        )
        if v is not None
    ]
    if not points:
        return
    steps, values, passing, warning = (list(c) for c in zip(*points, strict=True))
    how = (
        f"{band.k:g} x honest {band.honest} drift + floor"
        if band.source == "measured"
        else ("fixed table")
    )
    ax.fill_between(
        steps,
        [v - w for v, w in zip(values, warning, strict=True)],
        [v + w for v, w in zip(values, warning, strict=True)],
        color="C0",
        alpha=0.12,
        linewidth=0,
        label="warn band",
    )
    ax.fill_between(
        steps,
        [v - p for v, p in zip(values, passing, strict=True)],
        [v + p for v, p in zip(values, passing, strict=True)],
        color="C0",
        alpha=0.3,
        linewidth=0,
        label=plot_text(f"pass band ({how})"),
    )


def _deviation_panel(ax: Any, r: FidelityResult) -> None:
    """|target - reference| loss per compared step (x the reference's loss at the step, log
    scale) against the pass and warn bands: where a narrow band is invisible on the loss
    curve, it shows here."""
    band = r.band
    compared = r.compared_steps or 0
    if not r.reference_loss or not compared:
        ax.set_visible(False)
        return
    devs = [
        (s, max(d, 1e-12))
        for s, d in enumerate(loss_deviations(r.target_loss, r.reference_loss, compared))
        if d is not None
    ]
    if band is not None and band.loss_pass:
        steps = list(range(len(band.loss_pass)))
        ax.fill_between(steps, 1e-12, band.loss_warn, color="C0", alpha=0.12, linewidth=0)
        ax.fill_between(steps, 1e-12, band.loss_pass, color="C0", alpha=0.3, linewidth=0)
    if devs:
        ax.plot(*zip(*devs, strict=True), "o-", color="C1", ms=3, lw=1)
    log_axis(ax, "y")
    shown = [d for _, d in devs] + (band.loss_pass + band.loss_warn if band else [])
    low = min([d for d in shown if d > 1e-12], default=1e-6)
    ax.set_ylim(low / 3, max(shown, default=1.0) * 3)
    ax.set_xlabel("training step (compared window)")
    ax.set_ylabel("|loss dev| / reference", fontsize="small")


def loss_figure(answer: Answer, out: list[Figure]) -> None:
    """Loss curves of each fidelity check, target against reference with the loss bands
    around the reference; under each, the per-step deviation against the bands."""
    checks = [c for c in answer.fidelity if c.result.target_loss or c.result.reference_loss]
    if not checks:
        return
    shown = checks[:MAX_LOSS_PANELS]
    cols = min(3, len(shown))
    rows = (len(shown) + cols - 1) // cols
    caption = (
        "Fidelity: training loss on the target vs the reference, same weights and data; shaded: "
        "the pass band (dark) and warn band (light) around the reference over the compared "
        "steps. Below each: the target's loss deviation per compared step against the bands"
    )
    if len(checks) > len(shown):
        caption += f" (the first {len(shown)} of {len(checks)} checks; all are in the table)"
    with _figure("loss_curves.png", caption, out, figsize=(5 * cols, 5.2 * rows)) as fig:
        grid = fig.add_gridspec(2 * rows, cols, height_ratios=[2.2, 1] * rows)
        for i, check in enumerate(shown):
            r = check.result
            row, col = divmod(i, cols)
            ax = fig.add_subplot(grid[2 * row, col])
            ref = [(s, v) for s, v in enumerate(r.reference_loss) if v is not None]
            tgt = [(s, v) for s, v in enumerate(r.target_loss) if v is not None]
            _shade_band(ax, r)
            if ref:
                ax.plot(*zip(*ref, strict=True), label=plot_text(f"reference {r.reference}"), lw=2)
            if tgt:
                ax.plot(
                    *zip(*tgt, strict=True), "--", label=plot_text(f"target {r.backend} {r.dtype}")
                )
            if r.first_nonfinite_step is not None:
                ax.axvline(
                    r.first_nonfinite_step, color="red", linestyle=":", label="first NaN/Inf"
                )
            ax.set_title(
                plot_text(f"{check.system}: {r.workload} {r.dtype} — {r.verdict}", 70),
                fontsize="medium",
            )
            ax.set_ylabel("loss (cross-entropy, nats)")
            ax.legend(fontsize="x-small")
            _deviation_panel(fig.add_subplot(grid[2 * row + 1, col]), r)
        fig.suptitle("Training loss: target vs reference, within the band?")


def roofline_figure(answer: Answer, out: list[Figure]) -> None:
    """Rooflines of each system (measured matmul and bandwidth) with LLM prefill and decode."""
    roofs = [r for r in answer.roofs if r.peak_flops and r.bandwidth]
    if not roofs and not answer.roofline:
        return
    import numpy as np

    intensities = [p.intensity for p in answer.roofline] or [1.0]
    low = min(min(intensities) / 4, 0.1)
    high = max(max(intensities) * 4, 1000.0)
    xs = np.logspace(np.log10(low), np.log10(high), 200)
    caption = "Roofline from measured matmul (compute) and bandwidth probes; LLM prefill/decode"
    with _figure("roofline.png", caption, out, figsize=(11, 5.5)) as fig:
        ax = fig.add_subplot(1, 1, 1)
        colors: dict[str, Any] = {}
        cycle = iter(["C0", "C1", "C2", "C3", "C4", "C5", "C6", "C7", "C8", "C9"] * 10)
        for roof in roofs:
            color = colors.setdefault(roof.system, next(cycle))
            for dtype, peak in sorted(roof.peak_flops.items()):
                ax.plot(
                    xs,
                    np.minimum(peak, roof.bandwidth * xs),
                    color=color,
                    linestyle="-" if dtype == "fp32" else "--",
                    label=plot_text(f"{roof.system} roof {dtype}"),
                )
        markers = {"prefill": "o", "decode": "^"}
        for p in answer.roofline:
            color = colors.setdefault(p.system, next(cycle))
            ax.scatter(
                [p.intensity],
                [p.achieved_flops],
                marker=markers.get(p.mode, "s"),
                color=color,
                edgecolor="black",
                zorder=3,
                s=60,
                label=plot_text(f"{p.system} {p.workload} {p.mode} {p.dtype} b{p.batch}"),
            )
        log_axes(ax)
        ax.set_title("Roofline: LLM prefill (compute-bound) vs decode (bandwidth-bound)")
        ax.set_xlabel("arithmetic intensity (FLOP/byte)")
        ax.set_ylabel("achieved FLOP/s")
        ax.legend(fontsize="x-small", loc="upper left", bbox_to_anchor=(1.01, 1))
        ax.grid(True, which="both", alpha=0.3)


def all_figures(answer: Answer) -> dict[str, Figure]:
    """Every figure that has data, by file name."""
    out: list[Figure] = []
    for make in (
        throughput_figure,
        penalty_figure,
        phases_figure,
        mfu_figure,
        memory_figure,
        loss_figure,
        roofline_figure,
        convergence_figure,
    ):
        make(answer, out)
    return {f.name: f for f in out}


def convergence_figure(answer: Answer, out: list[Figure]) -> None:
    """Per converge case: each device seed's eval loss against the reference seeds' (thin
    grey) and the honest low-precision seeds' (dotted), the target line and the band of
    steps-to-target (shaded)."""
    rows = answer.convergence[:MAX_LOSS_PANELS]
    if not rows:
        return
    cols = min(3, len(rows))
    lines = (len(rows) + cols - 1) // cols
    caption = (
        "Train to a target: held-out eval loss of each device seed (colour) against the "
        "reference seeds (grey) and the honest low-precision seeds (dotted); dashed: the "
        "target (the reference's median eval loss at the target step); shaded: the band of "
        "the reference's steps-to-target"
    )
    with _figure("convergence.png", caption, out, figsize=(5 * cols, 3.8 * lines)) as fig:
        for i, row in enumerate(rows):
            c = row.result
            ax = fig.add_subplot(lines, cols, i + 1)
            if c.band is not None:
                ax.axvspan(c.band.low, c.band.high, color="tab:green", alpha=0.12, label="band")
            for curve in c.curves:
                points = [
                    (s, v) for s, v in zip(curve.eval_steps, curve.eval_loss, strict=False)
                    if v is not None
                ]  # fmt: skip
                if not points:
                    continue
                if curve.run == "reference":
                    ax.plot(*zip(*points, strict=True), color="0.6", lw=1)
                elif curve.run == "honest":
                    ax.plot(*zip(*points, strict=True), ":", color="0.4", lw=1)
                else:
                    ax.plot(*zip(*points, strict=True), lw=1.6, label=f"seed {curve.seed}")
            ax.axhline(c.target_loss, color="black", linestyle="--", lw=1, label="target")
            ax.set_title(
                plot_text(f"{row.system}: {row.workload} {row.dtype} — {c.verdict}", 70),
                fontsize="medium",
            )
            ax.set_xlabel("training step")
            ax.set_ylabel("eval loss (held-out)")
            ax.legend(fontsize="x-small")
        fig.suptitle("Steps to the target: device seeds against the reference band")
