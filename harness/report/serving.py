"""The report's "Inference under load" section: per system and served workload the
single-stream p99s, offline throughput, the max rate at the p99 targets (the buyer's
sentence) and the latency-vs-rate curve of the server scenario."""

from __future__ import annotations

import io

from harness.analysis.serving import ServingRow
from harness.report.mpl import literal_figure, log_axes, plot_text
from harness.report.render import Figure, Section, Table
from harness.units import format_rate, format_seconds

CURVE_METRICS = ("ttft", "tpot", "latency")
_LABELS = {"ttft": "p99 TTFT", "tpot": "p99 TPOT", "latency": "p99 latency"}


def latency_rate_figure(rows: list[ServingRow]) -> Figure | None:
    """p99 of each targeted metric against the offered arrival rate, one panel per metric,
    one line per system and workload; the targets as dotted lines."""
    rows = [r for r in rows if r.curve]
    if not rows:
        return None
    metrics = [m for m in CURVE_METRICS if any(m in r.targets for r in rows)]
    with literal_figure(figsize=(5.5 * len(metrics), 4.5)) as fig:
        for i, metric in enumerate(metrics, 1):
            ax = fig.add_subplot(1, len(metrics), i)
            for row in rows:
                if metric not in row.targets:
                    continue
                points = [p for p in row.curve if metric in p.p99]
                label = plot_text(f"{row.system} {row.workload} {row.dtype} b{row.max_batch}")
                line = ax.plot(
                    [p.rate for p in points],
                    [p.p99[metric] * 1e3 for p in points],
                    marker="o",
                    label=label,
                )
                ax.axhline(row.targets[metric] * 1e3, color=line[0].get_color(), linestyle=":")
            log_axes(ax)
            ax.set_xlabel("offered arrival rate (requests/s)")
            ax.set_ylabel(f"{_LABELS[metric]} (ms)")
            ax.set_title(f"{_LABELS[metric]} vs rate (dotted: target)")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize="x-small")
        fig.suptitle("Server scenario: latency grows with the arrival rate")
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    caption = "p99 latency (TTFT/TPOT for LLMs) against the Poisson arrival rate"
    return Figure(name="latency_vs_rate.png", caption=caption, png=buffer.getvalue())


def serving_section(rows: list[ServingRow]) -> Section | None:
    """The section, or None when no run has scenario results."""
    if not rows:
        return None
    table_rows = []
    for r in rows:
        single = ", ".join(
            f"{_LABELS[m]} {format_seconds(v)}"
            for m, v in r.single_stream_p99.items()
            if m in _LABELS
        )
        table_rows.append(
            [
                r.system, r.workload, r.dtype, str(r.max_batch), r.preset, single or "-",
                format_rate(r.single_stream_rate), format_rate(r.offline_rate), r.claim,
            ]
        )  # fmt: skip
    columns = [
        "system", "workload", "dtype", "max batch", "preset", "single-stream",
        "single-stream req/s", "offline req/s", "at the p99 targets",
    ]  # fmt: skip
    figure = latency_rate_figure(rows)
    return Section(
        title="Inference under load",
        paragraphs=[
            "LoadGen-style scenarios (docs/scenarios.md): single-stream issues one request at "
            "a time; offline hands over every request at once; server issues Poisson arrivals "
            "and measures latency from arrival, so queueing counts. The max rate is the "
            "highest arrival rate whose p99s met the targets in a bounded bisection."
        ],
        tables=[Table(columns=columns, rows=table_rows)],
        figures=[figure] if figure else [],
    )


def claims_by_case(rows: list[ServingRow]) -> dict[tuple[str, str, str], str]:
    """(system, workload, dtype) -> the buyer's sentence, for the training-penalty table."""
    return {(r.system, r.workload, r.dtype): r.claim for r in rows if r.status == "ok"}
