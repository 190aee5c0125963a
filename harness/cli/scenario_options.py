"""What `bench run --scenario` reads from its options: the scenario settings, with errors
that name the option and the valid choices."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from harness.errors import BenchError
from harness.results.config import SCENARIOS, LatencyTargets, LengthSpec, ScenarioSettings
from harness.results.endpoint import EndpointSettings


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


EndpointOption = Annotated[
    str | None,
    typer.Option(
        help="Scenarios against OpenAI-compatible servers: base URL(s), comma-separated "
        "(e.g. http://host:8000/v1); --label names each (docs/scenarios.md)."
    ),
]
ModelOption = Annotated[str | None, typer.Option(help="Endpoint: the model name to request.")]
ApiOption = Annotated[str, typer.Option(help="Endpoint: completions | chat.")]
ConcurrencyOption = Annotated[
    str | None, typer.Option(help="Endpoint: closed-loop points at these concurrencies: 1,2,4.")
]
BurstinessOption = Annotated[
    float, typer.Option(help="Endpoint: gamma arrivals' shape (1 = Poisson, < 1 burstier).")
]
DatasetOption = Annotated[
    str | None, typer.Option(help="Endpoint: JSONL prompts ('prompt' or ShareGPT conversations).")
]
PriceOption = Annotated[
    float | None, typer.Option(help="Endpoint: $ per hour of the device(s): $ per 1M tokens.")
]
DevicesOption = Annotated[
    int, typer.Option(min=1, help="Endpoint: devices behind each server (per-device figures).")
]
E2EOption = Annotated[
    float | None, typer.Option(help="Endpoint: per-request end-to-end SLO for goodput (ms).")
]
RequestTimeoutOption = Annotated[
    float, typer.Option(help="Endpoint: seconds before a request fails as a timeout.")
]
AuditOption = Annotated[
    bool, typer.Option("--audit/--no-audit", help="Endpoint: run the audits of the timed run.")
]


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


def with_endpoint(
    settings: ScenarioSettings,
    endpoint: str | None,
    *,
    model: str | None,
    api: str,
    label: str,
    concurrency: str | None,
    burstiness: float,
    dataset: str | None,
    price_per_hour: float | None,
    devices: int,
    target_e2e_ms: float | None,
    request_timeout: float,
    audit: bool,
) -> ScenarioSettings:
    """`settings` with the endpoint options; unchanged without --endpoint. BenchError for a
    bad value, naming the option."""
    if endpoint is None:
        if concurrency or dataset or price_per_hour is not None or model is not None:
            raise BenchError(
                "--model, --concurrency, --dataset and --price-per-hour need --endpoint URL."
            )
        return settings
    urls = [u.strip() for u in endpoint.split(",") if u.strip()]
    for url in urls:
        if not url.startswith(("http://", "https://")):
            raise BenchError(
                f"--endpoint expects http(s) URLs like http://host:8000/v1; got {url}."
            )
    if not urls:
        raise BenchError("--endpoint expects at least one URL.")
    if not model:
        raise BenchError("--endpoint needs --model NAME (the model the server serves).")
    if api not in ("completions", "chat"):
        raise BenchError(f"unknown --api '{api}'; choose from: completions, chat.")
    labels = [part.strip() for part in label.split(",")] if label else []
    if labels and len(labels) != len(urls):
        raise BenchError(
            f"--label names each endpoint: {len(urls)} URL(s) but {len(labels)} label(s)."
        )
    if not burstiness > 0:
        raise BenchError(f"--burstiness must be positive; got {burstiness:g}.")
    for option, value in (
        ("--price-per-hour", price_per_hour),
        ("--target-e2e-ms", target_e2e_ms),
        ("--request-timeout", request_timeout),
    ):
        if value is not None and not value > 0:
            raise BenchError(f"{option} must be positive; got {value:g}.")
    if dataset is not None and not Path(dataset).is_file():
        raise BenchError(f"--dataset {dataset}: no such file.")
    return settings.model_copy(
        update={
            "endpoint": EndpointSettings(
                urls=urls,
                labels=labels,
                model=model,
                api=api,  # type: ignore[arg-type]
                concurrency=parse_concurrency(concurrency),
                burstiness=burstiness,
                dataset=dataset,
                price_per_hour=price_per_hour,
                devices=devices,
                e2e_s=target_e2e_ms / 1e3 if target_e2e_ms is not None else None,
                request_timeout_s=request_timeout,
                audits=audit,
            )
        }
    )
