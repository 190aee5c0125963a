"""`bench run --scenario ...` without the CLI: plan one scenario case per workload, dtype and
max batch, run each through the isolation executor (timeouts, crashes, OOM and NaN handled
as for any case), and write the results file after each."""

from __future__ import annotations

from collections.abc import Callable

from backends.registry import get_backend_class
from harness.isolation.executor import Executor, WorkerFailure
from harness.results.config import RunConfig, ScenarioSettings
from harness.results.schema import ScenarioResult
from harness.results.store import save_run
from harness.run.execute import prime_job
from harness.run.plan import plan_cases
from harness.run.session import RunInterrupted, RunOutcome, finish, open_run, signals_raise
from harness.scenarios.job import ScenarioSpec, failed, scenario_job
from workloads.registry import all_workloads

DEFAULT_WORKLOADS: tuple[str, ...] = ("gpt", "llama", "moe", "convnet")
"""What `--scenario` serves when no workload is named (those registered here)."""

ScenarioProgressFn = Callable[[int, int, ScenarioSpec, ScenarioResult | None], None]
"""Called before (result None) and after each scenario case: index, total, spec, result."""


def plan_scenarios(config: RunConfig) -> list[ScenarioSpec]:
    """One ScenarioSpec per workload x dtype x max batch of `config` (mode `serve`).

    The max batch is --max-batch, else each --batch, else the preset's batch. Raises
    BenchError / WorkloadError for bad input, as plan_cases does."""
    settings = (config.scenario or ScenarioSettings()).for_preset(config.preset)
    known = all_workloads()
    names = config.workloads or [name for name in DEFAULT_WORKLOADS if name in known]
    cases = plan_cases(config.model_copy(update={"workloads": names, "modes": ["infer"]}))
    specs: list[ScenarioSpec] = []
    for case in cases:
        batch = settings.max_batch or case.key.batch
        specs.append(
            ScenarioSpec(
                backend=case.backend,
                key=case.key.model_copy(update={"mode": "serve", "batch": batch}),
                params={**case.params, "batch": batch},
                seed=case.seed,
                settings=settings,
            )
        )
    return specs


def scenario_timeout(config: RunConfig, settings: ScenarioSettings) -> float:
    """Seconds one scenario case may take: --case-timeout, else the preset's case timeout
    plus twice the server search's time budget."""
    if config.case_timeout_s is not None:
        return config.case_timeout_s
    return config.case_timeout() + 2.0 * (settings.time_budget_s or 0.0)


def run_scenarios(
    config: RunConfig,
    command: list[str] | None = None,
    progress: ScenarioProgressFn | None = None,
) -> RunOutcome:
    """Run every scenario case of `config` and write the results file (record.scenarios).

    Raises BenchError for bad input before anything runs, RunInterrupted after a signal (the
    file is then saved with status `incomplete`)."""
    specs = plan_scenarios(config)
    record, path = open_run(config, command)
    try:
        with signals_raise(), Executor(config.isolate, (prime_job, config.backend)) as executor:
            for index, spec in enumerate(specs):
                if progress:
                    progress(index, len(specs), spec, None)
                timeout = scenario_timeout(config, spec.settings)
                result = _run_one(executor, spec, timeout)
                record.scenarios.append(result)
                save_run(record, path)
                if progress:
                    progress(index, len(specs), spec, result)
    except RunInterrupted:
        finish(record, path, "incomplete")
        raise
    return finish(record, path, "complete")


def _run_one(executor: Executor, spec: ScenarioSpec, timeout: float) -> ScenarioResult:
    try:
        # each scenario case in a fresh worker where host fallbacks are warned of only once
        # per process (see harness.run.runner)
        fresh = get_backend_class(spec.backend).warns_once_per_process
        answer = executor.run(scenario_job, spec.model_dump_json(), timeout, fresh)
    except WorkerFailure as exc:
        return failed(spec, exc.kind, str(exc))
    return ScenarioResult.model_validate_json(answer)
