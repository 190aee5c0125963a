"""`bench run` without the CLI: plan the cases, measure each in rounds in isolation, flush
each result.

Every case is measured in R rounds (`RunConfig.rounds_count`), in the order of
`harness.run.schedule.round_schedule`: one round job measures one case for one round, in the
worker that keeps the case built between its rounds (harness.run.execute), and returns the
round's raw RoundResult; the runner folds a case's rounds into its CaseResult
(harness.run.fold.fold_rounds) after each. The results file
is created before the first job and replaced atomically after every job, so an interrupted or
crashed run still leaves a valid file (status `incomplete`) whose cases hold the rounds done.
A case that fails in a round is failed; its later rounds are skipped.
"""

from __future__ import annotations

import contextlib
import secrets
from pathlib import Path

from backends.registry import get_backend_class
from harness.convergence.job import ConvergeSpec, converge_job
from harness.errors import failed_result
from harness.isolation.executor import Executor, WorkerFailure
from harness.results.config import RunConfig
from harness.results.schema import CaseResult, RunRecord
from harness.results.store import save_run
from harness.run.case import RoundResult, RoundSpec
from harness.run.execute import (
    clear_cache,
    clear_cache_job,
    failed_round,
    prime_job,
    round_job,
)
from harness.run.fidelity_suite import FidelityProgressFn, plan_fidelity, run_fidelity_checks
from harness.run.fold import fold_rounds
from harness.run.plan import plan_cases, plan_converge
from harness.run.schedule import round_schedule
from harness.run.session import (
    ProgressFn,
    RunInterrupted,
    RunOutcome,
    finish,
    open_run,
    signals_raise,
)


def run(
    config: RunConfig,
    command: list[str] | None = None,
    progress: ProgressFn | None = None,
    fidelity_progress: FidelityProgressFn | None = None,
) -> RunOutcome:
    """Run every case of `config` and write the results file; see module docstring.

    Raises BenchError for bad input before any case runs, RunInterrupted after a signal (the
    file is then saved with status `incomplete`). A single process: `--nproc > 1`,
    `--nnodes > 1` and `--scaling` are harness.distributed.supervisor.run_distributed's.
    The stored config holds the rounds, round seed and interleaving used. `progress` is
    called before and after every round job (index and total count jobs).
    """
    config = config.model_copy(
        update={
            "rounds": config.rounds_count(),
            "round_seed": config.round_seed
            if config.round_seed is not None
            else secrets.randbits(31),
            "interleave": config.interleave_mode(),
        }
    )
    specs = plan_cases(config)
    converge_specs = plan_converge(config)
    fidelity_specs = plan_fidelity(config)
    record, path = open_run(config, command)
    timeout = config.case_timeout()
    rounds = config.rounds_count()
    # A runtime that warns of a host fallback once per operator per process records a
    # case's fallbacks completely only where the case runs first in a fresh worker; later
    # rounds may share one (the case's record is the union over its rounds).
    fresh_per_case = get_backend_class(config.backend).warns_once_per_process
    assert config.round_seed is not None
    segments = round_schedule(
        [s.key for s in specs], rounds, config.round_seed, config.interleave_mode()
    )
    total = sum(len(segment.jobs) for segment in segments)
    rounds_of: dict[int, list[RoundResult]] = {}
    results: dict[int, CaseResult] = {}
    done = 0
    try:
        with signals_raise(), Executor(config.isolate, (prime_job, config.backend)) as executor:
            for segment in segments:
                for job in segment.jobs:
                    spec, previous = specs[job.case], results.get(job.case)
                    if previous is not None and previous.status != "ok":
                        total -= 1  # a failed case skips its later rounds
                        continue
                    if progress:
                        progress(done, total, spec, None)
                    round_spec = RoundSpec(case=spec, round=job.round, rounds=rounds)
                    fresh = fresh_per_case and job.case not in rounds_of
                    case_rounds = rounds_of.setdefault(job.case, [])
                    case_rounds.append(_run_round(executor, round_spec, timeout, fresh))
                    results[job.case] = fold_rounds(spec.key, case_rounds, spec.measure.precision)
                    record.cases = [results[i] for i in sorted(results)]
                    save_run(record, path)
                    if progress:
                        progress(done, total, spec, results[job.case])
                    done += 1
                _clear(executor, timeout)
            _run_converge(executor, converge_specs, record, path, config.converge_timeout())
            run_fidelity_checks(
                executor,
                fidelity_specs,
                record,
                path,
                config.fidelity_timeout(),
                fidelity_progress,
            )
    except RunInterrupted:
        clear_cache()
        finish(record, path, "incomplete")
        raise
    return finish(record, path, "complete")


def _run_converge(
    executor: Executor,
    specs: list[ConvergeSpec],
    record: RunRecord,
    path: Path,
    timeout: float,
) -> None:
    """Each converge case in one isolation job (harness.convergence.job.converge_job), after
    the timed cases; the file is saved after each. A crash or hang fails the case."""
    for spec in specs:
        try:
            answer = executor.run(converge_job, spec.model_dump_json(), timeout)
            case = CaseResult.model_validate_json(answer)
        except WorkerFailure as exc:
            case = failed_result(CaseResult, spec.key, exc.kind, str(exc))
        record.cases.append(case)
        save_run(record, path)


def _run_round(
    executor: Executor, job: RoundSpec, timeout: float, fresh: bool = False
) -> RoundResult:
    """One round job under the case timeout, in a new worker when `fresh`; a crash or hang
    of the worker fails the round (later round jobs of other cases rebuild in the fresh
    worker)."""
    try:
        answer = executor.run(round_job, job.model_dump_json(), timeout, fresh)
    except WorkerFailure as exc:
        return failed_round(job, exc.kind, str(exc))
    return RoundResult.model_validate_json(answer)


def _clear(executor: Executor, timeout: float) -> None:
    """Empty the cache of built cases where the jobs ran (a worker that fails at it is
    replaced by the next job anyway; a fresh process per job has nothing to empty)."""
    if executor.isolate == "case":
        return
    with contextlib.suppress(WorkerFailure):
        executor.run(clear_cache_job, "", timeout)
