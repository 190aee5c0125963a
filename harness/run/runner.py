"""`bench run` without the CLI: plan the cases, run each in isolation, flush each result.

The results file is created before the first case and replaced atomically after every case,
so an interrupted or crashed run still leaves a valid file (status `incomplete`).
"""

from __future__ import annotations

import signal
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from types import FrameType
from typing import Any

from pydantic import BaseModel

from backends.base import Backend
from backends.registry import get_backend
from harness.analysis.mfu import apply_peaks
from harness.distributed.launch import is_distributed
from harness.isolation.executor import Executor, WorkerFailure
from harness.measurement.environment import capture_environment
from harness.results.config import RunConfig
from harness.results.schema import CaseResult, RunRecord
from harness.results.store import claim_run_path, prepare_out_dir, save_run
from harness.run.execute import CaseSpec, failed
from harness.run.fidelity_suite import FidelityProgressFn, plan_fidelity, run_fidelity_checks
from harness.run.plan import check_dtypes_supported, plan_cases, supported_dtype_names

ProgressFn = Callable[[int, int, CaseSpec, CaseResult | None], None]
"""Called before (result None) and after each case: index, total, spec, result."""


class RunInterrupted(Exception):
    """SIGINT or SIGTERM arrived during a run; the partial results were kept."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class RunOutcome(BaseModel):
    """The finished record and where it was written."""

    record: RunRecord
    path: Path | None
    """None on the nodes other than 0 of a multi-node run (node 0 writes the file)."""

    @property
    def failed_cases(self) -> list[CaseResult]:
        return [c for c in self.record.cases if c.status == "failed"]


@contextmanager
def _signals_raise() -> Iterator[None]:
    """Turn SIGINT/SIGTERM into RunInterrupted for the duration of the run."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise RunInterrupted(signum)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


def run(
    config: RunConfig,
    command: list[str] | None = None,
    progress: ProgressFn | None = None,
    fidelity_progress: FidelityProgressFn | None = None,
) -> RunOutcome:
    """Run every case of `config` and write the results file; see module docstring.

    Raises BenchError for bad input before any case runs, RunInterrupted after a signal (the
    file is then saved with status `incomplete`). `--nproc > 1`, `--nnodes > 1` and
    `--scaling` run through torchrun (harness.distributed.supervisor).
    """
    if is_distributed(config.nproc, config.nnodes, config.scaling):
        from harness.distributed.supervisor import run_distributed

        return run_distributed(config, command, progress)
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
        with _signals_raise(), Executor(config.isolate) as executor:
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


def new_record(
    config: RunConfig, command: list[str] | None, backend: Backend, **extra: Any
) -> RunRecord:
    """A fresh, running RunRecord for `config` on `backend`: new id, start time, environment."""
    return RunRecord(
        run_id=uuid.uuid4().hex,
        started_at=datetime.now(timezone.utc),
        command=command or [],
        label=config.label,
        backend=config.backend,
        config=config,
        environment=capture_environment(),
        device=backend.describe(),
        **extra,
    )


def _run_one(executor: Executor, spec: CaseSpec, timeout: float) -> CaseResult:
    try:
        answer = executor.run("case", spec.model_dump_json(), timeout)
    except WorkerFailure as exc:
        return failed(spec, exc.kind, str(exc))
    return CaseResult.model_validate_json(answer)
