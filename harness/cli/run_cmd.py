"""`bench run`: parse the options into a RunConfig, hand it to harness.dispatch.start, print.

Adding an option is one RunConfig field (or nested settings field) and one parameter below,
in its help panel; a parameter goes to the field of its own name unless OPTIONS (or
SCENARIO_OPTIONS) maps it elsewhere or converts its value."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from harness.cli.endpoint_run import endpoint_table, failed_requests, print_audits
from harness.cli.run_config import Option, build_config, read_config_file, rerun_base
from harness.cli.scenario_options import SCENARIO_OPTIONS
from harness.cli.tables import (
    convergence_table,
    fidelity_table,
    print_device_facts,
    print_distributed,
    scenario_table,
    summary_table,
)
from harness.dispatch import Outcome, start
from harness.errors import BenchError
from harness.fidelity.jobs import FidelitySpec
from harness.results.config import RunConfig
from harness.results.fidelity import FidelityResult
from harness.results.schema import CaseResult, ScenarioResult
from harness.run.case import CaseSpec
from harness.run.session import RunInterrupted
from harness.scenarios.job import ScenarioSpec

CASES = "Cases"
MEASUREMENT = "Measurement"
FIDELITY = "Fidelity"
DISTRIBUTED = "Distributed"
CONVERGE = "Train to a target"
SCENARIOS = "Scenarios"
OUTPUT = "Output"


def split_list(value: str | None) -> list[str]:
    """`a,b , c` -> ['a', 'b', 'c']; None or empty -> []."""
    return [part.strip() for part in (value or "").split(",") if part.strip()]


def parse_batches(value: str | None) -> list[int]:
    """Comma-separated integers (RunConfig refuses those that are not positive); BenchError
    naming an entry that is not an integer."""
    batches = []
    for part in split_list(value):
        try:
            batches.append(int(part))
        except ValueError:
            raise BenchError(f"--batch expects positive integers like 1,8; got '{part}'.") from None
    return batches


def parse_params(values: list[str] | None) -> dict[str, str]:
    """`key=value` pairs (optionally `workload.key=value`); BenchError for a malformed one."""
    params: dict[str, str] = {}
    for item in values or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise BenchError(f"--param expects key=value (e.g. seq_len=128); got '{item}'.")
        params[key.strip()] = value.strip()
    return params


OPTIONS: dict[str, Option] = {
    "workload": Option("workloads", split_list),
    "mode": Option("modes", split_list),
    "dtype": Option("dtypes", split_list),
    "batch": Option("batches", parse_batches),
    "param": Option("params", parse_params),
    "case_timeout": Option("case_timeout_s"),
    "fidelity_timeout": Option("fidelity_timeout_s"),
    **SCENARIO_OPTIONS,
}
"""Options whose RunConfig field has another name, or whose value needs converting."""

NOT_CONFIG = ("ctx", "config", "rerun")
"""Parameters that say where the config comes from, not what is in it."""

GIVEN = ("COMMANDLINE", "ENVIRONMENT", "PROMPT")
"""Where a given option's value came from (click's ParameterSource names; typer may carry
its own copy of click, so the names are compared, not the enum)."""


def given_options(ctx: typer.Context, values: dict[str, Any]) -> dict[str, tuple[str, Any]]:
    """The options given on the command line, as field path -> (option, converted value)."""
    given: dict[str, tuple[str, Any]] = {}
    for name, value in values.items():
        source = ctx.get_parameter_source(name)
        if name in NOT_CONFIG or source is None or source.name not in GIVEN:
            continue
        field, convert = OPTIONS.get(name, Option(name))
        given[field] = (name, convert(value) if convert else value)
    return given


def run_config(
    ctx: typer.Context, values: dict[str, Any], config: Path | None, rerun: Path | None
) -> RunConfig:
    """The RunConfig of the command line: its options over the `--config` file or the
    `--rerun` results file's config. BenchError naming the option or key for bad input."""
    if config is not None and rerun is not None:
        raise BenchError("give --config FILE.toml or --rerun RESULTS.json, not both.")
    base: dict[str, Any] = {}
    source = None
    if config is not None:
        base, source = read_config_file(config), str(config)
    elif rerun is not None:
        base, source = rerun_base(rerun), f"the config stored in {rerun}"
    given = given_options(ctx, values)
    endpoint_given = [f for f in given if f.startswith("scenario.endpoint.")]
    in_base = bool((base.get("scenario") or {}).get("endpoint"))
    if endpoint_given and "scenario.endpoint.urls" not in given and not in_base:
        names = ", ".join("--" + given[f][0].replace("_", "-") for f in endpoint_given)
        raise BenchError(f"{names}: endpoint option(s) need --endpoint URL.")
    if "scenario.endpoint.urls" in given and "label" in given and given["label"][1]:
        labels = [part.strip() for part in given["label"][1].split(",")]
        given["scenario.endpoint.labels"] = ("label", labels)
    if "scenario" not in base and "scenario.scenarios" not in given:
        stray = [option for field, (option, _) in given.items() if field.startswith("scenario.")]
        if stray:
            names = ", ".join("--" + s.replace("_", "-") for s in stray)
            raise BenchError(f"{names}: scenario option(s); add --scenario to run scenarios.")
    return build_config(base, given, source)


def run_command(
    ctx: typer.Context,
    backend: Annotated[
        str,
        typer.Option(help="Backend name (see `bench list backends`).", rich_help_panel=CASES),
    ] = "cpu",
    workload: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated workloads (default: the preset's suite).", rich_help_panel=CASES
        ),
    ] = None,
    mode: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated modes: infer,train,prefill,decode,...", rich_help_panel=CASES
        ),
    ] = None,
    dtype: Annotated[
        str, typer.Option(help="Comma-separated dtypes: fp32,bf16,fp16.", rich_help_panel=CASES)
    ] = "fp32",
    batch: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated batch sizes (default: per preset).", rich_help_panel=CASES
        ),
    ] = None,
    preset: Annotated[str, typer.Option(help="tiny | small | base.", rich_help_panel=CASES)] = (
        "small"
    ),
    param: Annotated[
        list[str] | None,
        typer.Option(help="Workload parameter key=value (repeatable).", rich_help_panel=CASES),
    ] = None,
    compile: Annotated[
        bool, typer.Option("--compile", help="Use torch.compile.", rich_help_panel=CASES)
    ] = False,
    seed: Annotated[
        int, typer.Option(help="Seed for weights and data.", rich_help_panel=CASES)
    ] = 0,
    rounds: Annotated[
        int | None,
        typer.Option(
            help="Rounds each case is measured in, its time budget split across them "
            "(default: tiny/small 5, base 3).",
            rich_help_panel=MEASUREMENT,
        ),
    ] = None,
    round_seed: Annotated[
        int | None,
        typer.Option(
            help="Seed of the case order within rounds (default: fresh, stored).",
            rich_help_panel=MEASUREMENT,
        ),
    ] = None,
    interleave: Annotated[
        str | None,
        typer.Option(
            help="run | workload | case: interleave rounds across the whole run, one "
            "workload group at a time, or not at all (each case's rounds back to back, one "
            "model alive at a time: for a model the device holds once) (default: run; "
            "workload for base).",
            rich_help_panel=MEASUREMENT,
        ),
    ] = None,
    case_timeout: Annotated[
        float | None,
        typer.Option(
            help=(
                "Seconds per round of a case before it is killed (default: by preset); a new "
                "worker's start and imports do not count."
            ),
            rich_help_panel=MEASUREMENT,
        ),
    ] = None,
    isolate: Annotated[
        str,
        typer.Option(
            help="none | worker (default) | case: where cases run.", rich_help_panel=MEASUREMENT
        ),
    ] = "worker",
    profile: Annotated[
        bool,
        typer.Option(
            "--profile",
            help="Profile each case; store its top operators.",
            rich_help_panel=MEASUREMENT,
        ),
    ] = False,
    profile_trace: Annotated[
        bool,
        typer.Option(
            "--profile-trace",
            help="--profile, and write Chrome traces to OUT/traces.",
            rich_help_panel=MEASUREMENT,
        ),
    ] = False,
    fidelity: Annotated[
        bool | None,
        typer.Option(
            "--fidelity/--no-fidelity",
            help="Check training fidelity against the reference (default: on for the default "
            "suite, off when --workload is given).",
            rich_help_panel=FIDELITY,
        ),
    ] = None,
    reference: Annotated[
        str,
        typer.Option(
            help="Fidelity reference: cpu:fp32 (default) or cpu:fp64.", rich_help_panel=FIDELITY
        ),
    ] = "cpu:fp32",
    fidelity_steps: Annotated[
        int | None,
        typer.Option(
            help="Training steps per fidelity check (default: tiny 20, small 100).",
            rich_help_panel=FIDELITY,
        ),
    ] = None,
    fidelity_timeout: Annotated[
        float | None,
        typer.Option(
            help="Seconds per fidelity check (default: 3 x the case timeout).",
            rich_help_panel=FIDELITY,
        ),
    ] = None,
    nproc: Annotated[
        int,
        typer.Option(
            help="Processes per node; > 1 runs through torchrun (DDP, collectives).",
            rich_help_panel=DISTRIBUTED,
        ),
    ] = 1,
    nnodes: Annotated[
        int, typer.Option(help="Nodes (torchrun --nnodes).", rich_help_panel=DISTRIBUTED)
    ] = 1,
    node_rank: Annotated[
        int,
        typer.Option(help="This node's rank (torchrun --node-rank).", rich_help_panel=DISTRIBUTED),
    ] = 0,
    rdzv_endpoint: Annotated[
        str | None,
        typer.Option(
            help="HOST:PORT of node 0 (torchrun --rdzv-endpoint).", rich_help_panel=DISTRIBUTED
        ),
    ] = None,
    scaling: Annotated[
        bool,
        typer.Option(
            "--scaling",
            help="Measure 1..--nproc processes; scaling efficiency.",
            rich_help_panel=DISTRIBUTED,
        ),
    ] = False,
    scenario: Annotated[
        str | None,
        typer.Option(
            help="Inference scenarios instead of timed cases: single-stream,offline,server "
            "(docs/scenarios.md).",
            rich_help_panel=SCENARIOS,
        ),
    ] = None,
    target_ttft_ms: Annotated[
        float | None,
        typer.Option(
            help="Server: p99 time-to-first-token target (ms).", rich_help_panel=SCENARIOS
        ),
    ] = None,
    target_tpot_ms: Annotated[
        float | None,
        typer.Option(
            help="Server: p99 time-per-output-token target (ms).", rich_help_panel=SCENARIOS
        ),
    ] = None,
    target_latency_ms: Annotated[
        float | None,
        typer.Option(
            help="Server: p99 latency target of image requests (ms).", rich_help_panel=SCENARIOS
        ),
    ] = None,
    max_batch: Annotated[
        int | None,
        typer.Option(
            help="Scenarios: most requests per batch (default: --batch).",
            rich_help_panel=SCENARIOS,
        ),
    ] = None,
    max_wait_ms: Annotated[
        float | None,
        typer.Option(
            help="Server: longest wait for a fuller image batch (ms).", rich_help_panel=SCENARIOS
        ),
    ] = None,
    rate: Annotated[
        str | None,
        typer.Option(
            help="Server: fixed arrival rates (req/s) instead of a search.",
            rich_help_panel=SCENARIOS,
        ),
    ] = None,
    lengths: Annotated[
        str,
        typer.Option(
            help="LLM request lengths: fixed | uniform | lognormal.", rich_help_panel=SCENARIOS
        ),
    ] = "lognormal",
    input_len: Annotated[
        int,
        typer.Option(help="LLM prompt tokens, median (0: seq_len / 4).", rich_help_panel=SCENARIOS),
    ] = 0,
    output_len: Annotated[
        int,
        typer.Option(
            help="LLM generated tokens, median (0: seq_len / 8).", rich_help_panel=SCENARIOS
        ),
    ] = 0,
    requests: Annotated[
        int | None,
        typer.Option(
            help="Scenarios: requests per measured point, at least.", rich_help_panel=SCENARIOS
        ),
    ] = None,
    search_steps: Annotated[
        int | None,
        typer.Option(
            help="Server: bisection steps of the max-rate search.", rich_help_panel=SCENARIOS
        ),
    ] = None,
    scenario_time: Annotated[
        float | None,
        typer.Option(
            help="Server: time budget of the max-rate search (s).", rich_help_panel=SCENARIOS
        ),
    ] = None,
    endpoint: Annotated[
        str | None,
        typer.Option(
            help="Scenarios against OpenAI-compatible servers: base URL(s), comma-separated "
            "(e.g. http://host:8000/v1); --label names each (docs/scenarios.md).",
            rich_help_panel=SCENARIOS,
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(help="Endpoint: the model name to request.", rich_help_panel=SCENARIOS),
    ] = None,
    api: Annotated[
        str,
        typer.Option(help="Endpoint: completions | chat.", rich_help_panel=SCENARIOS),
    ] = "completions",
    concurrency: Annotated[
        str | None,
        typer.Option(
            help="Endpoint: closed-loop points at these concurrencies: 1,2,4.",
            rich_help_panel=SCENARIOS,
        ),
    ] = None,
    burstiness: Annotated[
        float,
        typer.Option(
            help="Endpoint: gamma arrivals' shape (1 = Poisson, < 1 burstier).",
            rich_help_panel=SCENARIOS,
        ),
    ] = 1.0,
    dataset: Annotated[
        str | None,
        typer.Option(
            help="Endpoint: JSONL prompts ('prompt' or ShareGPT conversations).",
            rich_help_panel=SCENARIOS,
        ),
    ] = None,
    price_per_hour: Annotated[
        float | None,
        typer.Option(
            help="Endpoint: $ per hour of the device(s): $ per 1M tokens.",
            rich_help_panel=SCENARIOS,
        ),
    ] = None,
    devices: Annotated[
        int,
        typer.Option(
            help="Endpoint: devices behind each server (per-device figures).",
            rich_help_panel=SCENARIOS,
        ),
    ] = 1,
    target_e2e_ms: Annotated[
        float | None,
        typer.Option(
            help="Endpoint: per-request end-to-end SLO for goodput (ms).", rich_help_panel=SCENARIOS
        ),
    ] = None,
    request_timeout: Annotated[
        float,
        typer.Option(
            help="Endpoint: seconds before a request fails as a timeout.", rich_help_panel=SCENARIOS
        ),
    ] = 60.0,
    audit: Annotated[
        bool,
        typer.Option(
            "--audit/--no-audit",
            help="Endpoint: run the audits of the timed run.",
            rich_help_panel=SCENARIOS,
        ),
    ] = True,
    out: Annotated[Path, typer.Option(help="Output folder.", rich_help_panel=OUTPUT)] = Path(
        "results"
    ),
    label: Annotated[
        str, typer.Option(help="Free text stored with the run.", rich_help_panel=OUTPUT)
    ] = "",
    config: Annotated[
        Path | None,
        typer.Option(
            help="Read the run's config from a TOML file (keys: RunConfig's fields; "
            "docs/config.md); options given here override it.",
        ),
    ] = None,
    rerun: Annotated[
        Path | None,
        typer.Option(
            help="Run again the config stored in a results file (not its --out or "
            "--round-seed); options given here override it.",
        ),
    ] = None,
    seeds: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="--mode converge: seeds per case (default: tiny 3, small 5).",
            rich_help_panel=CONVERGE,
        ),
    ] = None,
    target_step: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="--mode converge: the reference step whose median eval loss is the target "
            "(default: tiny 100, small 300).",
            rich_help_panel=CONVERGE,
        ),
    ] = None,
    soak_steps: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="--mode converge: train the first seed on to this many steps.",
            rich_help_panel=CONVERGE,
        ),
    ] = None,
    soak_s: Annotated[
        float | None,
        typer.Option(
            min=1,
            help="--mode converge: ...or for this many seconds of training.",
            rich_help_panel=CONVERGE,
        ),
    ] = None,
) -> None:
    """Measure workloads on one backend; write results/<time>-<backend>-<id>.json."""
    values = dict(locals())  # every option by its parameter name (a comprehension has its own)
    run = run_config(ctx, values, config, rerun)
    console = Console(width=None if sys.stdout.isatty() else 160)
    try:
        outcome = _start_with_progress(run, console)
    except RunInterrupted as exc:
        console.print(f"[yellow]interrupted by {exc}; partial results kept (status incomplete).")
        raise typer.Exit(130 if exc.signum == 2 else 143) from None
    print_outcome(console, outcome, run)
    if run.scenario is not None and run.scenario.endpoint is not None:
        failed = failed_requests(outcome.record.scenarios)
        if failed:
            console.print(f"[red]{failed} request(s) failed; see the endpoint table for reasons.")
            raise typer.Exit(1)
    if outcome.failed_cases:
        console.print(f"[red]{len(outcome.failed_cases)} case(s) failed.")
        raise typer.Exit(1)
    if outcome.failed_scenarios:
        console.print(f"[red]{len(outcome.failed_scenarios)} scenario case(s) failed.")
        raise typer.Exit(1)


def print_outcome(console: Console, outcome: Outcome, config: RunConfig) -> None:
    """The tables of a finished run, where its results went and its report."""
    record = outcome.record
    if config.scenario is not None:
        console.print(scenario_table(record.scenarios))
        if config.scenario.endpoint is not None:
            console.print(endpoint_table(record.scenarios))
            print_audits(console, record.scenarios)
    elif outcome.path is None:  # a node other than 0: it only knows the failures it saw
        if record.cases:
            console.print(summary_table(record.cases))
        console.print(f"node {config.node_rank} done; results: written by global rank 0 on node 0")
        return
    else:
        console.print(summary_table(record.cases))
        print_device_facts(console, record)
        print_distributed(console, record)
        if record.fidelity:
            console.print(fidelity_table(record.fidelity))
        if any(c.convergence for c in record.cases):
            console.print(convergence_table(record.cases))
    console.print(f"results: {escape(str(outcome.path))}")
    if outcome.report is not None:
        markdown = outcome.report.with_suffix(".md")
        console.print(f"report: {escape(str(outcome.report))} and {escape(str(markdown))}")
    if outcome.report_error is not None:
        console.print(f"[yellow]could not write the report: {escape(outcome.report_error)}")


def _start_with_progress(config: RunConfig, console: Console) -> Outcome:
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=not sys.stdout.isatty(),
    )
    task = progress.add_task("planning", total=None)

    def on_case(index: int, total: int, spec: CaseSpec, result: CaseResult | None) -> None:
        progress.update(task, total=total, completed=index + (result is not None))
        progress.update(task, description=escape(spec.key.id))
        if result is not None and not sys.stdout.isatty():
            console.print(f"[{index + 1}/{total}] {escape(spec.key.id)}: {result.status}")

    def on_fidelity(
        index: int, total: int, spec: FidelitySpec, result: FidelityResult | None
    ) -> None:
        label = escape(f"fidelity {spec.workload}/{spec.dtype}/{spec.preset} vs {spec.reference}")
        progress.update(task, description=label)
        if result is not None and not sys.stdout.isatty():
            console.print(f"[fidelity {index + 1}/{total}] {label}: {result.verdict}")

    def on_scenario(
        index: int, total: int, spec: ScenarioSpec, result: ScenarioResult | None
    ) -> None:
        if result is not None:
            console.print(f"[{index + 1}/{total}] {escape(spec.key.id)}: {result.status}")

    command = ["bench", *sys.argv[1:]]
    if config.scenario is not None:  # scenario lines are printed as they come, no bar
        return start(config, command, on_scenario=on_scenario)
    with progress:
        return start(config, command, on_case=on_case, on_fidelity=on_fidelity)
