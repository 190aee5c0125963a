"""One entry point for a run: `start(config)` does what `bench run` does, for a library user.

It chooses the engine (timed cases in one process, timed cases through torchrun, or
inference scenarios), owns the defaults that depend on the whole request (fidelity checks
for the default suite) and writes the report after a default-suite run. `bench run` parses
its options into a RunConfig, calls `start` and prints; nothing else decides.

    from harness import start
    from harness.results.config import RunConfig
    outcome = start(RunConfig(preset="tiny", workloads=["mlp"]))
    print(outcome.path, outcome.report)
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from harness.distributed.supervisor import run_distributed
from harness.results.config import RunConfig
from harness.results.schema import CaseResult, RunRecord, ScenarioResult
from harness.run.fidelity_suite import FidelityProgressFn
from harness.run.runner import run
from harness.run.session import ProgressFn
from harness.scenarios.endpoint import run_endpoints
from harness.scenarios.runner import ScenarioProgressFn, run_scenarios


class Outcome(BaseModel):
    """What a run left behind: its record, the results file and (after a default-suite run)
    the report."""

    record: RunRecord
    path: Path | None
    """The results file; None on the nodes other than 0 of a multi-node run."""
    report: Path | None = None
    """The report's HTML page, written beside the results file (its markdown is next to it)."""
    report_error: str | None = None
    """Why the report could not be written (the results are safe; the report is not)."""

    @property
    def failed_cases(self) -> list[CaseResult]:
        return [c for c in self.record.cases if c.status == "failed"]

    @property
    def failed_scenarios(self) -> list[ScenarioResult]:
        return [s for s in self.record.scenarios if s.status == "failed"]


def with_defaults(config: RunConfig) -> RunConfig:
    """`config` with the request-wide defaults decided: fidelity checks are on for the default
    suite of a timed run (no workload named, no scenario, no converge mode) unless the config
    says otherwise, and never for a scenario run."""
    # A converge run trains to a target instead: fidelity checks only when asked for.
    default = not config.workloads and "converge" not in config.modes
    fidelity = config.fidelity if config.fidelity is not None else default
    return config.model_copy(update={"fidelity": fidelity and config.scenario is None})


def report_folder(path: Path) -> Path:
    """Where the report of the results file `path` goes: beside it, `<stem>-report`."""
    return path.with_name(path.stem + "-report")


def start(
    config: RunConfig,
    command: list[str] | None = None,
    on_case: ProgressFn | None = None,
    on_fidelity: FidelityProgressFn | None = None,
    on_scenario: ScenarioProgressFn | None = None,
) -> Outcome:
    """Run `config` on the engine it calls for and write its results file (and, after a
    default-suite run, its report). `command` is stored in the record (what to type to run it
    again); the callbacks report progress before and after each case, fidelity check or
    scenario case.

    Raises BenchError (or WorkloadError, BackendError) for bad input before anything runs,
    RunInterrupted after SIGINT/SIGTERM (the partial file is kept). A report that cannot be
    written is not an error: `Outcome.report_error` says why."""
    config = with_defaults(config)
    if config.scenario is not None and config.scenario.endpoint is not None:
        done = run_endpoints(config, command, on_scenario)
    elif config.scenario is not None:
        done = run_scenarios(config, command, on_scenario)
    elif config.distributed:
        done = run_distributed(config, command, on_case)
    else:
        done = run(config, command=command, progress=on_case, fidelity_progress=on_fidelity)
    outcome = Outcome(record=done.record, path=done.path)
    if outcome.path is not None and not config.workloads and config.scenario is None:
        try:
            from harness.report.build import write_report

            outcome.report = write_report([done.record], report_folder(outcome.path)).html
        except Exception as exc:  # the results are on disk; the report is a convenience
            outcome.report_error = str(exc) or type(exc).__name__
    return outcome
