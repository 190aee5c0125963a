"""Every terminal table the commands print: run results, fidelity, distributed runs and
comparisons. Commands import from here, never from each other; numbers go through
harness.units so a table reads like the report."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from harness.analysis.compare import CaseComparison, RunComparison
from harness.analysis.device_facts import energy_not_measured, peak_kind, sustain_summary
from harness.analysis.scenario_compare import ScenarioComparison
from harness.results.convergence_judge import ConvergenceComparison, median_known
from harness.results.fidelity import FidelityResult
from harness.results.schema import (
    CaseResult,
    Convergence,
    RunRecord,
    ScenarioPoint,
    ScenarioResult,
)
from harness.units import (
    format_bytes,
    format_number,
    format_percent,
    format_rate,
    format_seconds,
)

_VERDICT_STYLE = {"pass": "green", "warn": "yellow", "fail": "red", "skipped": "dim"}

_COMPARISON_STYLE = {
    "regressed": "[bold red]regressed[/]",
    "failed": "[bold red]failed[/]",
    "improved": "[green]improved[/]",
    "noisy": "[yellow]~ noisy[/]",
    "unchanged": "unchanged",
    "not comparable": "[magenta]not comparable[/]",
    "missing": "[dim]missing[/]",
    "new": "[cyan]new[/]",
}


def summary_table(cases: list[CaseResult]) -> Table:
    """One row per case: median with CI, throughput, MFU with the kind of peak it used (spec,
    burst or sustained), energy per step with the average power, peak memory, status."""
    table = Table(title="results")
    columns = ("case", "median (95% CI)", "throughput", "MFU (peak)", "energy/step", "peak mem",
               "status")  # fmt: skip
    for column in columns:
        table.add_column(column, overflow="fold")
    for case in cases:
        m = case.measurement
        median = (
            f"{format_seconds(m.median)} ({format_seconds(m.ci95[0])}-{format_seconds(m.ci95[1])})"
            if m
            else "-"
        )
        throughput = (
            format_rate(case.throughput.value, case.throughput.unit) if case.throughput else "-"
        )
        mfu = format_percent(case.mfu)
        if case.mfu is not None:
            mfu += f" ({peak_kind(case.peak_flops_source)})"
        if case.mfu_status == "above_100":
            mfu = "dropped (> 100%)"  # the peak was not the device's maximum; see mfu_note
        energy = (
            f"{format_number(case.energy.joules_per_step)} J "
            f"({format_number(case.energy.average_power_w)} W)"
            if case.energy
            else "-"
        )
        if case.status == "ok":
            status = "[green]ok[/]"
            if m and m.stability != "ok":
                status += f" [yellow]noisy ({m.stability})[/]"
        else:
            reason = case.error.message if case.error else ""
            kind = case.error.kind if case.error else case.status
            status = f"[red]{case.status}[/] {kind}: {escape(reason)}"
        table.add_row(
            escape(case.key.id),
            median,
            throughput,
            mfu,
            energy,
            format_bytes(case.peak_memory_bytes),
            status,
        )
    return table


def print_device_facts(console: Console, record: RunRecord) -> None:
    """Sustained-vs-burst lines of matmul probes, the peak training MFU used, and
    `energy: not measured (reason)` once per distinct reason."""
    for case in record.cases:
        line = sustain_summary(case)
        if line is not None:
            console.print(f"{escape(case.key.id)}: {escape(line)}", soft_wrap=True)
    for dtype, peak in record.sustained_peaks.items():
        console.print(
            f"training MFU ({dtype}) uses the sustained peak {format_rate(peak.flops, 'FLOP/s')}",
            soft_wrap=True,
        )
    for line in energy_not_measured(record.cases):
        console.print(escape(line), soft_wrap=True)


def fidelity_table(results: list[FidelityResult]) -> Table:
    """One row per fidelity check: deviations, determinism, verdict and reasons."""
    table = Table(title="training fidelity")
    for column in (
        "check",
        "steps",
        "loss dev (x reference loss)",
        "grad-norm dev (x median)",
        "routing mismatch",
        "bitwise",
        "verdict",
    ):
        table.add_column(column, overflow="fold")
    for r in results:
        style = _VERDICT_STYLE.get(r.verdict, "")
        verdict = f"[{style}]{r.verdict}[/]"
        if r.reasons:
            verdict += " " + escape("; ".join(r.reasons))
        table.add_row(
            escape(r.id),
            str(r.steps),
            format_number(r.max_rel_loss_deviation, 2),
            format_number(r.max_rel_grad_norm_deviation, 2),
            format_number(r.max_routing_mismatch, 2),
            "-" if r.deterministic is None else ("yes" if r.deterministic else "no"),
            verdict,
        )
    return table


def collectives_table(cases: list[CaseResult]) -> Table:
    """One row per collective and message size: time, algbw, busbw (GB/s = 1e9 B/s)."""
    table = Table(title="collectives (nccl-tests busbw)")
    for column in ("case", "size", "time", "algbw GB/s", "busbw GB/s"):
        table.add_column(column)
    for case in cases:
        for point in case.collectives or []:
            table.add_row(
                escape(case.key.id),
                format_bytes(point.size_bytes, spec="g"),
                format_seconds(point.median_s),
                format_number(point.algbw / 1e9),
                format_number(point.busbw / 1e9),
            )
    return table


def per_rank_table(cases: list[CaseResult]) -> Table:
    """Each rank's own median per case, next to the step time (max over ranks)."""
    table = Table(title="per-rank medians (step time = max over ranks per sample)")
    for column in ("case", "step time", "ranks"):
        table.add_column(column, overflow="fold")
    for case in cases:
        if not case.per_rank or not case.measurement:
            continue
        ranks = ", ".join(f"{t.rank}: {format_seconds(t.median)}" for t in case.per_rank)
        table.add_row(escape(case.key.id), format_seconds(case.measurement.median), ranks)
    return table


def scaling_table(cases: list[CaseResult]) -> Table:
    """Throughput and scaling efficiency per world size."""
    table = Table(title="scaling efficiency = (throughput_N / N) / (throughput_1 / 1)")
    for column in ("case", "world", "throughput", "efficiency"):
        table.add_column(column)
    for case in cases:
        if case.scaling_efficiency is None or case.throughput is None:
            continue
        table.add_row(
            escape(case.key.model_copy(update={"nproc": 1}).id),
            str(case.key.nproc),
            # 4 digits and no prefix: efficiencies are read off neighbouring rows
            f"{format_number(case.throughput.value, 4)} {escape(case.throughput.unit)}",
            format_percent(case.scaling_efficiency),
        )
    return table


def print_distributed(console: Console, record: RunRecord) -> None:
    """Print the distributed tables that apply to this run (nothing for a 1-process run)."""
    if record.distributed is None:
        return
    info = record.distributed
    console.print(
        f"distributed: {escape(info.dist_backend)}, world size "
        f"{', '.join(map(str, info.world_sizes))}, {info.nnodes} node(s), "
        f"{info.threads_per_rank} thread(s) per rank, via {info.launcher}"
    )
    if any(c.per_rank for c in record.cases):
        console.print(per_rank_table(record.cases))
    if any(c.collectives for c in record.cases):
        console.print(collectives_table(record.cases))
    if any(c.scaling_efficiency is not None for c in record.cases):
        console.print(scaling_table(record.cases))


def _comparison_median(entry: CaseComparison, which: str) -> str:
    case = entry.base if which == "base" else entry.new
    if case is None or case.measurement is None:
        return "-"
    return format_seconds(case.measurement.median)


def _floor(entry: CaseComparison) -> str:
    """The case's noise floor and where it comes from, e.g. `12% (rounds)`."""
    if entry.noise_floor is None:
        return "-"
    return f"{entry.noise_floor:.0%} ({entry.floor_source})"


def comparison_table(result: RunComparison) -> Table:
    """One row per case: medians, ratio new/base with its 95% CI, p-value, the threshold, the
    noise floor, verdict; and, when the machine itself moved between the runs, the yardstick
    that moved most for each case."""
    table = Table(title="new vs base (time per iteration; ratio > 1 is slower)")
    machine = result.machine_moved()
    columns = (
        "case",
        "base median",
        "new median",
        "ratio (95% CI)",
        "p",
        "limit",
        "noise floor",
        *(["machine"] if machine else []),
        "verdict",
    )
    for column in columns:
        table.add_column(column, overflow="fold")
    for entry in result.cases:
        if entry.ratio is not None and entry.ratio_ci95 is not None:
            low, high = entry.ratio_ci95
            ratio = f"{entry.ratio:.3f} ({low:.3f}-{high:.3f})"
        else:
            ratio = "-"
        limit = f"±{entry.threshold:.0%}" if entry.threshold is not None else "-"
        verdict = _COMPARISON_STYLE[entry.verdict]
        if entry.reason:
            verdict += f": {escape(entry.reason)}"
        table.add_row(
            escape(entry.case_id),
            _comparison_median(entry, "base"),
            _comparison_median(entry, "new"),
            ratio,
            format_number(entry.p_value, 2),
            limit,
            _floor(entry),
            *([_machine(entry)] if machine else []),
            verdict,
        )
    return table


def _machine(entry: CaseComparison) -> str:
    """The yardstick that moved most between the runs for this case, e.g. `train 1.54x`."""
    if not entry.yardsticks:
        return "-"
    moved = max(entry.yardsticks, key=lambda y: y.move)
    return f"{moved.name} {moved.machine_ratio:.2f}x"


def _ms(value: float | None) -> str:
    return format_seconds(value) if value is not None else "-"


def _row(point: ScenarioPoint) -> list[str]:
    stats = point.percentiles
    cells = []
    for metric in ("latency", "ttft", "tpot"):
        found = stats.get(metric)
        cells.append(f"{_ms(found.p50)} / {_ms(found.p99)}" if found else "-")
    rate = f"{point.target_rate:.4g}" if point.target_rate is not None else "-"
    verdict = "-" if point.meets_target is None else ("meets" if point.meets_target else "misses")
    if point.meets_target is not None and not point.decided:
        verdict += " (undecided)"
    achieved = f"{point.achieved_rate:.4g}"
    return [point.scenario, rate, achieved, str(point.requests), *cells, verdict]


def scenario_table(results: list[ScenarioResult]) -> Table:
    """One row per measured point: offered and achieved rate, p50 / p99 of latency, TTFT and
    TPOT, and the verdict against the targets; the max rate at target per case."""
    table = Table(title="inference scenarios (p50 / p99)")
    for column in (
        "case",
        "scenario",
        "rate (req/s)",
        "achieved (req/s)",
        "requests",
        "latency",
        "TTFT",
        "TPOT",
        "target",
    ):
        table.add_column(column, overflow="fold")
    for result in results:
        case = escape(result.key.id)
        if result.status != "ok":
            why = f"{result.error.kind}: {result.error.message}" if result.error else ""
            table.add_row(case, f"[red]{result.status}[/] {escape(why)}", *["-"] * 7)
            continue
        points = [p for p in (result.single_stream, result.offline) if p] + result.server
        for point in points:
            table.add_row(case, *_row(point))
        if result.max_rate is not None or result.search_note:
            bounds = ", ".join(f"p99 {m} <= {_ms(v)}" for m, v in result.targets.items())
            rate = f"{result.max_rate:.4g} req/s" if result.max_rate is not None else "none"
            note = escape(result.search_note)
            table.add_row(case, "[bold]max rate[/]", rate, "", "", escape(bounds), "", "", note)
    return table


def scenario_comparison_table(rows: list[ScenarioComparison]) -> Table:
    """One row per compared scenario figure: base, new, ratio with its 95% CI, p, verdict."""
    table = Table(title="inference scenarios, new vs base (latency ratio > 1 is slower)")
    for column in ("case", "figure", "base", "new", "ratio (95% CI)", "p", "verdict"):
        table.add_column(column, overflow="fold")
    for row in rows:
        rate = "rate" in row.figure or "throughput" in row.figure
        shown = [
            "-" if v is None else (format_rate(v, "req/s") if rate else format_seconds(v))
            for v in (row.base, row.new)
        ]
        ratio = "-" if row.ratio is None else f"{row.ratio:.3f}"
        if row.ratio_ci95 is not None:
            ratio += f" ({row.ratio_ci95[0]:.3f}-{row.ratio_ci95[1]:.3f})"
        verdict = _COMPARISON_STYLE[row.verdict] + (f": {escape(row.reason)}" if row.reason else "")
        p_value = f"{row.p_value:.2g}" if row.p_value is not None else "-"
        table.add_row(escape(row.case_id), row.figure, *shown, ratio, p_value, verdict)
    return table


_CONVERGENCE_STYLE = {
    "pass": "green",
    "fast": "yellow",
    "slow": "red",
    "not_reached": "red",
    "unstable": "red",
    "failed": "red",
}


def _to_target(c: Convergence) -> str:
    """'1.2 s, 516 J': the median seed's training time and (where metered) energy to target."""
    text = format_seconds(median_known(c.time_to_target_s))
    if c.energy_to_target_median_j is not None:
        text += f", {format_number(c.energy_to_target_median_j)} J"
    return text


def convergence_table(cases: list[CaseResult]) -> Table:
    """One row per converge case: the target, the device's and the reference's steps to it
    per seed, the band, the steps ratio with its CI, the stability events, the verdict."""
    table = Table(title="train to target (--mode converge)")
    columns = ("case", "target (eval loss)", "steps (device)", "steps (reference)", "band",
               "steps ratio (95% CI)", "to target (median seed)", "events",
               "verdict")  # fmt: skip
    for column in columns:
        table.add_column(column, overflow="fold")
    for case in cases:
        c = case.convergence
        if c is None:
            continue

        def steps(values: list[int | None]) -> str:
            return ", ".join("-" if v is None else str(v) for v in values)

        ratio = "-"
        if c.steps_ratio is not None:
            ratio = f"{c.steps_ratio:.2f}x"
            if c.steps_ratio_ci is not None:
                ratio += f" ({c.steps_ratio_ci[0]:.2f}-{c.steps_ratio_ci[1]:.2f})"
        kinds: dict[str, int] = {}
        for event in c.events:
            if event.run == "device":
                kinds[event.kind] = kinds.get(event.kind, 0) + 1
        events = ", ".join(f"{k} x{n}" for k, n in sorted(kinds.items())) or "-"
        style = _CONVERGENCE_STYLE.get(c.verdict, "white")
        table.add_row(
            escape(case.key.id),
            f"{c.target_loss:.4g} (ref step {c.target_step})",
            steps(c.steps_to_target),
            steps(c.reference_steps_to_target),
            f"{c.band.low}-{c.band.high}" if c.band else "-",
            ratio,
            _to_target(c),
            events,
            f"[{style}]{c.verdict}[/] " + escape("; ".join(c.reasons)),
        )
    return table


def convergence_comparison_table(rows: list[ConvergenceComparison]) -> Table:
    """Converge cases in both runs: steps to the target per seed, the ratios, the verdict."""
    table = Table(title="train to target: base -> new")
    for column in ("case", "steps (base seeds)", "steps (new seeds)", "steps ratio",
                   "time-to-train ratio", "verdict"):  # fmt: skip
        table.add_column(column, overflow="fold")

    def steps(values: list[int | None]) -> str:
        return ", ".join("-" if v is None else str(v) for v in values)

    for r in rows:
        table.add_row(
            escape(r.case),
            steps(r.base_steps),
            steps(r.new_steps),
            format_number(r.steps_ratio),
            format_number(r.time_ratio),
            _COMPARISON_STYLE.get(r.verdict, r.verdict)
            + (f" {escape(r.reason)}" if r.reason else ""),
        )
    return table
