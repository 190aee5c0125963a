"""What `bench run --scenario` reads from its options: the scenario settings, with errors
that name the option and the valid choices."""

from __future__ import annotations

from pydantic import ValidationError

from harness.errors import BenchError
from harness.results.config import SCENARIOS, LatencyTargets, LengthSpec, ScenarioSettings


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
