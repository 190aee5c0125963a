"""What `bench run --scenario` reads from its options and prints: the scenario settings and
one table row per measured scenario point."""

from __future__ import annotations

from pydantic import ValidationError
from rich.markup import escape
from rich.table import Table

from harness.errors import BenchError
from harness.results.config import SCENARIOS, LatencyTargets, LengthSpec, ScenarioSettings
from harness.results.schema import ScenarioPoint, ScenarioResult


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1e3:.3g} ms"


def parse_rates(text: str | None) -> list[float]:
    """`--rate 10,50.5` -> [10.0, 50.5]; BenchError naming a bad entry."""
    rates: list[float] = []
    for part in (text or "").split(","):
        if not part.strip():
            continue
        try:
            rate = float(part)
        except ValueError:
            raise BenchError(
                f"--rate expects request rates like 10,50 (per s); got '{part}'."
            ) from None
        if not rate > 0:
            raise BenchError(f"--rate values must be positive; got {part.strip()}.")
        rates.append(rate)
    return rates


def scenario_settings(
    scenario: str,
    preset: str,
    *,
    target_ttft_ms: float | None,
    target_tpot_ms: float | None,
    target_latency_ms: float | None,
    max_batch: int | None,
    max_wait_ms: float | None,
    rate: str | None,
    lengths: str,
    input_len: int,
    output_len: int,
    requests: int | None,
    search_steps: int | None,
    scenario_time: float | None,
) -> ScenarioSettings:
    """The ScenarioSettings of the `--scenario` options; BenchError naming the option and the
    valid choices for a bad value. Targets not given come from the preset."""
    names = [part.strip() for part in scenario.split(",") if part.strip()]
    for name in names:
        if name not in SCENARIOS:
            raise BenchError(f"unknown --scenario '{name}'; choose from: {', '.join(SCENARIOS)}.")
    if lengths not in ("fixed", "uniform", "lognormal"):
        raise BenchError(f"unknown --lengths '{lengths}'; choose from: fixed, uniform, lognormal.")
    for option, value in (
        ("--target-ttft-ms", target_ttft_ms),
        ("--target-tpot-ms", target_tpot_ms),
        ("--target-latency-ms", target_latency_ms),
        ("--max-wait-ms", max_wait_ms),
    ):
        if value is not None and (value < 0 or (value == 0 and option != "--max-wait-ms")):
            raise BenchError(f"{option} must be a positive number of milliseconds; got {value:g}.")
    defaults = ScenarioSettings().for_preset(preset).targets
    if defaults is None:
        raise BenchError(f"no default latency targets for preset '{preset}'.")
    try:
        targets = LatencyTargets(
            ttft_s=target_ttft_ms / 1e3 if target_ttft_ms is not None else defaults.ttft_s,
            tpot_s=target_tpot_ms / 1e3 if target_tpot_ms is not None else defaults.tpot_s,
            latency_s=(
                target_latency_ms / 1e3 if target_latency_ms is not None else defaults.latency_s
            ),
        )
        return ScenarioSettings(
            scenarios=names or list(SCENARIOS),  # type: ignore[arg-type]
            lengths=LengthSpec(kind=lengths, input_len=input_len, output_len=output_len),  # type: ignore[arg-type]
            targets=targets,
            max_batch=max_batch,
            max_wait_s=max_wait_ms / 1e3 if max_wait_ms is not None else None,
            rates=parse_rates(rate),
            requests=requests,
            search_steps=search_steps,
            time_budget_s=scenario_time,
        )
    except ValidationError as exc:
        problems = [
            f"{'.'.join(str(p) for p in error['loc'])}: {error['msg'].lower()}, "
            f"got {error['input']!r}"
            for error in exc.errors()
        ]
        raise BenchError("bad scenario option: " + "; ".join(problems) + ".") from None


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
