"""The report's "Serving endpoints" section: per endpoint its server, the client's limit,
failed requests, goodput and cost at the max rate, the audits, and the Pareto figure of the
concurrency sweep (throughput per device against tokens/s per user)."""

from __future__ import annotations

import io

from harness.analysis.endpoint import EndpointRow
from harness.report.mpl import literal_figure, plot_text
from harness.report.render import Figure, Section, Table
from harness.units import format_rate


def pareto_figure(rows: list[EndpointRow]) -> Figure | None:
    """Tokens/s per device against tokens/s per user, one line per endpoint through its
    concurrency points in order (labelled c1, c2, ...), the Pareto front drawn bold."""
    rows = [r for r in rows if r.sweep]
    if not rows:
        return None
    with literal_figure(figsize=(6.5, 4.5)) as fig:
        ax = fig.add_subplot(1, 1, 1)
        for row in rows:
            points = sorted(row.sweep, key=lambda s: s.concurrency)
            line = ax.plot(
                [p.interactivity for p in points],
                [p.throughput for p in points],
                marker="o",
                alpha=0.5,
                label=plot_text(f"{row.system} {row.label}"),
            )
            front = sorted((p for p in points if p.on_front), key=lambda s: s.interactivity)
            ax.plot(
                [p.interactivity for p in front],
                [p.throughput for p in front],
                color=line[0].get_color(),
                linewidth=2.5,
            )
            for p in points:
                ax.annotate(f"c{p.concurrency}", (p.interactivity, p.throughput), fontsize=7)
        ax.set_xlabel("interactivity (output tokens/s per user)")
        ax.set_ylabel("throughput (output tokens/s per device)")
        ax.set_title("Concurrency sweep (bold: Pareto front)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="x-small")
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    caption = "throughput per device against tokens/s per user at each --concurrency"
    return Figure(name="endpoint_pareto.png", caption=caption, png=buffer.getvalue())


def _audits(row: EndpointRow) -> str:
    parts = []
    if row.audits.accuracy is not None:
        a = row.audits.accuracy
        parts.append(f"accuracy {a.mismatches}/{a.compared} differ")
    if row.audits.tokens is not None:
        parts.append(f"tokens: {len(row.audits.tokens.violations)} issue(s)")
    if row.audits.repeated is not None:
        r = row.audits.repeated
        parts.append(f"repeats {r.ttft_ratio:.2f}x TTFT" + (" (cached)" if r.cached else ""))
    return "; ".join(parts) or "-"


def endpoint_section(rows: list[EndpointRow]) -> Section | None:
    """The section, or None when no run measured an endpoint."""
    if not rows:
        return None
    table_rows = []
    for r in rows:
        errors = ", ".join(f"{k} x{n}" for k, n in sorted(r.errors.items()))
        client = f"{format_rate(r.client_requests_per_s, 'req/s')}"
        if r.client_limited:
            client += " (a point came within 2x)"
        cost = r.usd_per_million_at_max_rate
        table_rows.append(
            [
                r.system, r.label, r.server or "-", r.model, client,
                f"{r.failed}/{r.issued}" + (f" ({errors})" if errors else ""),
                format_rate(r.goodput_at_max_rate, "req/s"),
                f"${cost:.3g}" if cost is not None else "-", _audits(r),
            ]
        )  # fmt: skip
    columns = [
        "system", "endpoint", "server", "model", "client limit", "failed/issued",
        "goodput at max rate", "$/1M tokens at max rate", "audits",
    ]  # fmt: skip
    figure = pareto_figure(rows)
    return Section(
        title="Serving endpoints",
        paragraphs=[
            "The same scenarios against OpenAI-compatible servers (docs/scenarios.md, "
            "'Against a serving endpoint'): they appear in the table above beside the "
            "in-process engine, labelled. Failed requests count against goodput; a point "
            "within 2x of the client's own limit is the client's figure, not the server's."
        ],
        tables=[Table(columns=columns, rows=table_rows)],
        figures=[figure] if figure else [],
    )
