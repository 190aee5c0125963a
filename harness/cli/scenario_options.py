"""Where the `bench run` scenario options go in RunConfig (`scenario.*`), with the checks
that need the option's own unit or syntax; the settings validate the rest."""

from __future__ import annotations

from collections.abc import Callable

from harness.cli.run_config import Option
from harness.errors import BenchError
from harness.results.config import SCENARIOS


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


def parse_scenarios(text: str) -> list[str]:
    """`single-stream,server` -> the names (RunConfig checks them); empty means all."""
    names = [part.strip() for part in text.split(",") if part.strip()]
    return names or list(SCENARIOS)


def milliseconds(option: str, zero_ok: bool = False) -> Callable[[float], float]:
    """A converter of `option`'s milliseconds to seconds that refuses a negative value (and
    zero unless `zero_ok`), naming the option."""

    def convert(value: float) -> float:
        if value < 0 or (value == 0 and not zero_ok):
            raise BenchError(f"{option} must be a positive number of milliseconds; got {value:g}.")
        return value / 1e3

    return convert


def parse_urls(text: str) -> list[str]:
    """`--endpoint URL[,URL]` -> the URLs (EndpointSettings checks each)."""
    return [part.strip() for part in text.split(",") if part.strip()]


def parse_concurrency(text: str | None) -> list[int]:
    """`--concurrency 1,2,4` -> [1, 2, 4]; BenchError naming a bad entry."""
    values: list[int] = []
    for part in (text or "").split(","):
        if not part.strip():
            continue
        try:
            value = int(part)
        except ValueError:
            raise BenchError(
                f"--concurrency expects whole numbers like 1,2,4; got '{part.strip()}'."
            ) from None
        if value < 1:
            raise BenchError(f"--concurrency values must be at least 1; got {value}.")
        values.append(value)
    return values


ENDPOINT_OPTIONS: dict[str, Option] = {
    "endpoint": Option("scenario.endpoint.urls", parse_urls),
    "model": Option("scenario.endpoint.model"),
    "api": Option("scenario.endpoint.api"),
    "concurrency": Option("scenario.endpoint.concurrency", parse_concurrency),
    "burstiness": Option("scenario.endpoint.burstiness"),
    "dataset": Option("scenario.endpoint.dataset"),
    "price_per_hour": Option("scenario.endpoint.price_per_hour"),
    "devices": Option("scenario.endpoint.devices"),
    "target_e2e_ms": Option("scenario.endpoint.e2e_s", milliseconds("--target-e2e-ms")),
    "request_timeout": Option("scenario.endpoint.request_timeout_s"),
    "audit": Option("scenario.endpoint.audits"),
}
"""The field of each endpoint option (under `scenario.endpoint`)."""


SCENARIO_OPTIONS: dict[str, Option] = {
    "scenario": Option("scenario.scenarios", parse_scenarios),
    "target_ttft_ms": Option("scenario.targets.ttft_s", milliseconds("--target-ttft-ms")),
    "target_tpot_ms": Option("scenario.targets.tpot_s", milliseconds("--target-tpot-ms")),
    "target_latency_ms": Option("scenario.targets.latency_s", milliseconds("--target-latency-ms")),
    "max_batch": Option("scenario.max_batch"),
    "max_wait_ms": Option("scenario.max_wait_s", milliseconds("--max-wait-ms", zero_ok=True)),
    "rate": Option("scenario.rates", parse_rates),
    "lengths": Option("scenario.lengths.kind"),
    "input_len": Option("scenario.lengths.input_len"),
    "output_len": Option("scenario.lengths.output_len"),
    "requests": Option("scenario.requests"),
    "search_steps": Option("scenario.search_steps"),
    "scenario_time": Option("scenario.time_budget_s"),
    **ENDPOINT_OPTIONS,
}
"""The field of each scenario option (all under `scenario`, so each needs its entry)."""
