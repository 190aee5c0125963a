"""`bench run` without the CLI: plan the cases, run each in isolation, flush each result.

The results file is created before the first case and replaced atomically after every case,
so an interrupted or crashed run still leaves a valid file (status `incomplete`).
"""

from __future__ import annotations

from datetime import datetime, timezone

from backends.registry import get_backend
from harness.analysis.mfu import apply_peaks
from harness.isolation.executor import Executor, WorkerFailure
from harness.results.config import RunConfig
from harness.results.schema import CaseResult
from harness.results.store import claim_run_path, prepare_out_dir, save_run
from harness.run.execute import CaseSpec, case_job, failed
from harness.run.fidelity_suite import FidelityProgressFn, plan_fidelity, run_fidelity_checks
from harness.run.plan import check_dtypes_supported, plan_cases, supported_dtype_names
from harness.run.session import ProgressFn, RunInterrupted, RunOutcome, new_record, signals_raise


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
    """
    specs = plan_cases(config)
    fidelity_specs = plan_fidelity(config)
    backend = get_backend(config.backend)
    check_dtypes_supported(config, supported_dtype_names(backend))
    out = prepare_out_dir(config.out)

    record = new_record(config, command, backend)
    path = claim_run_path(out, record)
    save_run(record, path)
    timeout = config.case_timeout()
    try:
        with signals_raise(), Executor(config.isolate) as executor:
            for index, spec in enumerate(specs):
                if progress:
                    progress(index, len(specs), spec, None)
                result = _run_one(executor, spec, timeout)
                record.cases.append(result)
                apply_peaks(record)
                save_run(record, path)
                if progress:
                    progress(index, len(specs), spec, result)
            run_fidelity_checks(executor, fidelity_specs, record, path, timeout, fidelity_progress)
    except RunInterrupted:
        record.status = "incomplete"
        record.finished_at = datetime.now(timezone.utc)
        save_run(record, path)
        raise
    record.status = "complete"
    record.finished_at = datetime.now(timezone.utc)
    save_run(record, path)
    return RunOutcome(record=record, path=path)


def _run_one(executor: Executor, spec: CaseSpec, timeout: float) -> CaseResult:
    try:
        answer = executor.run(case_job, spec.model_dump_json(), timeout)
    except WorkerFailure as exc:
        return failed(spec, exc.kind, str(exc))
    return CaseResult.model_validate_json(answer)
