"""`bench run`: measure cases on one backend and write a results file."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from harness.cli.scenario_options import scenario_settings
from harness.cli.tables import (
    convergence_table,
    fidelity_table,
    print_device_facts,
    print_distributed,
    scenario_table,
    summary_table,
)
from harness.distributed.launch import check_options, is_distributed
from harness.distributed.supervisor import run_distributed
from harness.errors import BenchError
from harness.fidelity.check import FidelitySpec
from harness.results.config import RunConfig
from harness.results.fidelity import FidelityResult
from harness.results.schema import CaseResult, ScenarioResult
from harness.run.execute import CaseSpec
from harness.run.runner import run
from harness.run.session import RunInterrupted, RunOutcome
from harness.scenarios.job import ScenarioSpec
from harness.scenarios.runner import run_scenarios


def split_list(value: str | None) -> list[str]:
    """`a,b , c` -> ['a', 'b', 'c']; None or empty -> []."""
    return [part.strip() for part in (value or "").split(",") if part.strip()]


def parse_batches(value: str | None) -> list[int]:
    """Comma-separated positive integers; BenchError naming the bad entry."""
    batches = []
    for part in split_list(value):
        try:
            batch = int(part)
        except ValueError:
            raise BenchError(f"--batch expects positive integers like 1,8; got '{part}'.") from None
        if batch <= 0:
            raise BenchError(f"--batch sizes must be positive integers; got {batch}.")
        batches.append(batch)
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


def _config(**options: object) -> RunConfig:
    """The RunConfig of the command-line options; BenchError naming the option for a value
    the config refuses (e.g. a negative --case-timeout)."""
    try:
        return RunConfig(**options)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = [
            f"--{str(error['loc'][0]).removesuffix('_s').replace('_', '-')}: "
            f"{error['msg'].lower()}, got {error['input']!r}"
            for error in exc.errors()
        ]
        raise BenchError("; ".join(problems) + ".") from None


def run_command(
    backend: Annotated[str, typer.Option(help="Backend name (see `bench list backends`).")] = "cpu",
    workload: Annotated[
        str | None, typer.Option(help="Comma-separated workloads (default: the suite).")
    ] = None,
    mode: Annotated[
        str | None, typer.Option(help="Comma-separated modes: infer,train,prefill,decode,...")
    ] = None,
    dtype: Annotated[str, typer.Option(help="Comma-separated dtypes: fp32,bf16,fp16.")] = "fp32",
    batch: Annotated[
        str | None, typer.Option(help="Comma-separated batch sizes (default: per preset).")
    ] = None,
    preset: Annotated[str, typer.Option(help="tiny | small | base.")] = "small",
    param: Annotated[
        list[str] | None, typer.Option(help="Workload parameter key=value (repeatable).")
    ] = None,
    compile: Annotated[bool, typer.Option("--compile", help="Use torch.compile.")] = False,
    fidelity: Annotated[
        bool | None,
        typer.Option(
            "--fidelity/--no-fidelity",
            help="Check training fidelity against the reference (default: on for the default "
            "suite, off when --workload is given).",
        ),
    ] = None,
    reference: Annotated[
        str, typer.Option(help="Fidelity reference: cpu:fp32 (default) or cpu:fp64.")
    ] = "cpu:fp32",
    fidelity_steps: Annotated[
        int | None,
        typer.Option(
            min=1, help="Training steps per fidelity check (default: tiny 20, small 100)."
        ),
    ] = None,
    case_timeout: Annotated[
        float | None, typer.Option(help="Seconds per case before it is killed.")
    ] = None,
    fidelity_timeout: Annotated[
        float | None,
        typer.Option(help="Seconds per fidelity check (default: 3 x the case timeout)."),
    ] = None,
    isolate: Annotated[
        str, typer.Option(help="none | worker (default) | case: where cases run.")
    ] = "worker",
    label: Annotated[str, typer.Option(help="Free text stored with the run.")] = "",
    seed: Annotated[int, typer.Option(help="Seed for weights and data.")] = 0,
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("results"),
    nproc: Annotated[
        int, typer.Option(help="Processes per node; > 1 runs through torchrun (DDP, collectives).")
    ] = 1,
    nnodes: Annotated[int, typer.Option(help="Nodes (torchrun --nnodes).")] = 1,
    node_rank: Annotated[int, typer.Option(help="This node's rank (torchrun --node-rank).")] = 0,
    rdzv_endpoint: Annotated[
        str | None, typer.Option(help="HOST:PORT of node 0 (torchrun --rdzv-endpoint).")
    ] = None,
    scaling: Annotated[
        bool, typer.Option("--scaling", help="Measure 1..--nproc processes; scaling efficiency.")
    ] = False,
    rounds: Annotated[
        int | None,
        typer.Option(
            help="Rounds each case is measured in, its time budget split across them "
            "(default: tiny/small 5, base 3)."
        ),
    ] = None,
    round_seed: Annotated[
        int | None,
        typer.Option(help="Seed of the case order within rounds (default: fresh, stored)."),
    ] = None,
    interleave: Annotated[
        str | None,
        typer.Option(
            help="run | workload: interleave rounds across the whole run, or one workload "
            "group at a time (default: run; workload for base)."
        ),
    ] = None,
    profile: Annotated[
        bool,
        typer.Option("--profile", help="Profile each case; store its top operators."),
    ] = False,
    profile_trace: Annotated[
        bool,
        typer.Option("--profile-trace", help="--profile, and write Chrome traces to OUT/traces."),
    ] = False,
    scenario: Annotated[
        str | None,
        typer.Option(
            help="Inference scenarios instead of timed cases: single-stream,offline,server "
            "(docs/scenarios.md)."
        ),
    ] = None,
    target_ttft_ms: Annotated[
        float | None, typer.Option(help="Server: p99 time-to-first-token target (ms).")
    ] = None,
    target_tpot_ms: Annotated[
        float | None, typer.Option(help="Server: p99 time-per-output-token target (ms).")
    ] = None,
    target_latency_ms: Annotated[
        float | None, typer.Option(help="Server: p99 latency target of image requests (ms).")
    ] = None,
    max_batch: Annotated[
        int | None, typer.Option(help="Scenarios: most requests per batch (default: --batch).")
    ] = None,
    max_wait_ms: Annotated[
        float | None, typer.Option(help="Server: longest wait for a fuller image batch (ms).")
    ] = None,
    rate: Annotated[
        str | None, typer.Option(help="Server: fixed arrival rates (req/s) instead of a search.")
    ] = None,
    lengths: Annotated[
        str, typer.Option(help="LLM request lengths: fixed | uniform | lognormal.")
    ] = "lognormal",
    input_len: Annotated[
        int, typer.Option(min=0, help="LLM prompt tokens, median (0: seq_len / 4).")
    ] = 0,
    output_len: Annotated[
        int, typer.Option(min=0, help="LLM generated tokens, median (0: seq_len / 8).")
    ] = 0,
    requests: Annotated[
        int | None, typer.Option(help="Scenarios: requests per measured point, at least.")
    ] = None,
    search_steps: Annotated[
        int | None, typer.Option(help="Server: bisection steps of the max-rate search.")
    ] = None,
    scenario_time: Annotated[
        float | None, typer.Option(help="Server: time budget of the max-rate search (s).")
    ] = None,
    seeds: Annotated[
        int | None,
        typer.Option(min=1, help="--mode converge: seeds per case (default: tiny 3, small 5)."),
    ] = None,
    target_step: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="--mode converge: the reference step whose median eval loss is the target "
            "(default: tiny 100, small 300).",
        ),
    ] = None,
    soak_steps: Annotated[
        int | None,
        typer.Option(min=1, help="--mode converge: train the first seed on to this many steps."),
    ] = None,
    soak_s: Annotated[
        float | None,
        typer.Option(min=1, help="--mode converge: ...or for this many seconds of training."),
    ] = None,
) -> None:
    """Measure workloads on one backend; write results/<time>-<backend>-<id>.json."""
    if isolate not in ("none", "worker", "case"):
        raise BenchError(f"unknown --isolate '{isolate}'; choose from: none, worker, case.")
    if interleave not in (None, "run", "workload"):
        raise BenchError(f"unknown --interleave '{interleave}'; choose from: run, workload.")
    check_options(nproc, nnodes, node_rank, rdzv_endpoint, scaling)
    if (profile or profile_trace) and is_distributed(nproc, nnodes, scaling):
        raise BenchError(
            "--profile and --profile-trace profile single-process cases only; drop them or "
            "run without --nproc/--nnodes/--scaling."
        )
    settings = None
    if scenario is not None:
        if nproc > 1 or nnodes > 1 or scaling:
            raise BenchError("--scenario runs in one process; drop --nproc/--nnodes/--scaling.")
        settings = scenario_settings(
            scenario,
            preset,
            target_ttft_ms=target_ttft_ms,
            target_tpot_ms=target_tpot_ms,
            target_latency_ms=target_latency_ms,
            max_batch=max_batch,
            max_wait_ms=max_wait_ms,
            rate=rate,
            lengths=lengths,
            input_len=input_len,
            output_len=output_len,
            requests=requests,
            search_steps=search_steps,
            scenario_time=scenario_time,
        )
    config = _config(
        backend=backend,
        workloads=split_list(workload),
        modes=split_list(mode),
        dtypes=split_list(dtype) or ["fp32"],
        batches=parse_batches(batch),
        preset=preset,
        params=parse_params(param),
        compile=compile,
        fidelity=(
            fidelity
            if fidelity is not None
            # A converge run trains to a target instead: fidelity only when asked for.
            else not split_list(workload) and "converge" not in split_list(mode)
        )
        and settings is None,
        reference=reference,
        fidelity_steps=fidelity_steps,
        case_timeout_s=case_timeout,
        fidelity_timeout_s=fidelity_timeout,
        isolate=isolate,  # type: ignore[arg-type]
        label=label,
        seed=seed,
        out=out,
        nproc=nproc,
        nnodes=nnodes,
        node_rank=node_rank,
        rdzv_endpoint=rdzv_endpoint,
        scaling=scaling,
        rounds=rounds,
        round_seed=round_seed,
        interleave=interleave,
        profile=profile,
        profile_trace=profile_trace,
        scenario=settings,
        seeds=seeds,
        target_step=target_step,
        soak_steps=soak_steps,
        soak_s=soak_s,
    )
    console = Console(width=None if sys.stdout.isatty() else 160)
    if settings is not None:
        run_scenario_command(config, console)
        return
    try:
        outcome = _run_with_progress(config, console)
    except RunInterrupted as exc:
        console.print(f"[yellow]interrupted by {exc}; partial results kept (status incomplete).")
        raise typer.Exit(130 if exc.signum == 2 else 143) from None
    if outcome.path is None:  # a node other than 0: it only knows the failures it saw
        if outcome.record.cases:
            console.print(summary_table(outcome.record.cases))
        console.print(f"node {node_rank} done; results: written by global rank 0 on node 0")
    else:
        console.print(summary_table(outcome.record.cases))
        print_device_facts(console, outcome.record)
        print_distributed(console, outcome.record)
        if outcome.record.fidelity:
            console.print(fidelity_table(outcome.record.fidelity))
        if any(c.convergence for c in outcome.record.cases):
            console.print(convergence_table(outcome.record.cases))
        console.print(f"results: {escape(str(outcome.path))}")
        report_hint(console, outcome, default_suite=not split_list(workload))
    if outcome.failed_cases:
        console.print(f"[red]{len(outcome.failed_cases)} case(s) failed.")
        raise typer.Exit(1)


def report_hint(console: Console, outcome: RunOutcome, default_suite: bool) -> None:
    """After the default suite, write the report beside the results file; always print the
    `bench report` command that makes it. A report that cannot be written only warns."""
    folder = outcome.path.with_name(outcome.path.stem + "-report")
    command = shlex.join(["bench", "report", str(outcome.path), "--out", str(folder)])
    if default_suite:
        try:
            from harness.report.build import write_report

            paths = write_report([outcome.record], folder)
            console.print(f"report: {escape(str(paths.html))} and {escape(str(paths.markdown))}")
        except Exception as exc:  # the results are safe on disk; the report is a convenience
            console.print(f"[yellow]could not write the report: {escape(str(exc))}")
    console.print(f"make the report with: {escape(command)}")


def run_scenario_command(config: RunConfig, console: Console) -> None:
    """`bench run --scenario`: run the scenarios, print their table; exit 1 if any failed."""

    def on_case(index: int, total: int, spec: ScenarioSpec, result: ScenarioResult | None) -> None:
        if result is not None:
            console.print(f"[{index + 1}/{total}] {escape(spec.key.id)}: {result.status}")

    try:
        outcome = run_scenarios(config, ["bench", *sys.argv[1:]], on_case)
    except RunInterrupted as exc:
        console.print(f"[yellow]interrupted by {exc}; partial results kept (status incomplete).")
        raise typer.Exit(130 if exc.signum == 2 else 143) from None
    console.print(scenario_table(outcome.record.scenarios))
    console.print(f"results: {escape(str(outcome.path))}")
    broken = [r for r in outcome.record.scenarios if r.status == "failed"]
    if broken:
        console.print(f"[red]{len(broken)} scenario case(s) failed.")
        raise typer.Exit(1)


def _run_with_progress(config: RunConfig, console: Console) -> RunOutcome:
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

    with progress:
        if is_distributed(config.nproc, config.nnodes, config.scaling):
            return run_distributed(config, ["bench", *sys.argv[1:]], on_case)
        return run(
            config,
            command=["bench", *sys.argv[1:]],
            progress=on_case,
            fidelity_progress=on_fidelity,
        )
