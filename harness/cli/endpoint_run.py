"""`bench run --scenario ... --endpoint URL`: run the scenarios against the endpoints, print
the scenario table, the endpoint table (failures, goodput, cost) and the audits."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from harness.results.schema import ScenarioResult


def _num(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}g}"


def endpoint_table(results: list[ScenarioResult]) -> Table:
    """One row per measured endpoint point: issued and failed requests (by reason), the
    fraction meeting every SLO, goodput, throughput per device, interactivity and cost."""
    table = Table(title="endpoint points (goodput: requests/s meeting every per-request SLO)")
    for column in (
        "endpoint", "point", "issued", "failed", "SLO met", "goodput (req/s)",
        "tokens/s/device", "tokens/s/user", "$/1M tokens", "note",
    ):  # fmt: skip
        table.add_column(column, overflow="fold")
    for result in results:
        points = [p for p in (result.single_stream, result.offline) if p]
        points += result.server + result.concurrency
        for p in points:
            e = p.endpoint
            if e is None:
                continue
            where = p.scenario
            if p.target_rate is not None:
                where += f" @ {p.target_rate:.4g} req/s"
            if e.concurrency is not None:
                where = f"concurrency {e.concurrency}"
            notes = [f"{reason} x{n}" for reason, n in sorted(e.errors.items())]
            if e.client_limited:
                notes.append("within 2x of the client's limit")
            table.add_row(
                escape(result.key.workload), where, str(e.issued),
                f"[red]{e.failed}[/]" if e.failed else "0", f"{e.slo_fraction:.0%}",
                _num(e.goodput), _num(e.tokens_per_s_per_device), _num(e.interactivity),
                _num(e.usd_per_million_tokens), escape("; ".join(notes)),
            )  # fmt: skip
    return table


def print_audits(console: Console, results: list[ScenarioResult]) -> None:
    for result in results:
        info = result.endpoint
        if info is None:
            continue
        name = escape(f"{info.label} ({info.server or 'server unnamed'}, {info.url})")
        console.print(f"{name}: {escape(info.client_note)}")
        audits = info.audits
        if audits.accuracy is not None:
            a = audits.accuracy
            console.print(
                f"  accuracy: {a.mismatches} of {a.compared} outputs differ from the same "
                f"prompt served alone (first differing tokens: {a.first_difference})"
            )
        if audits.tokens is not None:
            for violation in audits.tokens.violations or ["consistent"]:
                console.print(f"  tokens: {escape(violation)}")
        if audits.repeated is not None:
            r = audits.repeated
            verdict = "cached" if r.cached else "not cached"
            console.print(
                f"  repeated prompts: TTFT {r.ttft_ratio:.2f}x of unique prompts ({verdict})"
            )


def failed_requests(results: list[ScenarioResult]) -> int:
    """Requests that failed over every endpoint point of `results`, plus one per failed
    scenario case (a case that failed as a whole counts)."""
    failed = sum(
        p.endpoint.failed
        for r in results
        for p in [x for x in (r.single_stream, r.offline) if x] + r.server + r.concurrency
        if p.endpoint is not None
    )
    return failed + sum(1 for r in results if r.status == "failed")
