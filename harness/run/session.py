"""The session of a run, shared by the single-process runner and the distributed supervisor:
a fresh record, signal handling, the outcome, and the progress callback's shape."""

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

from backends.base import DTYPES, Backend, DeviceInfo
from backends.registry import (
    BackendError,
    backend_availability,
    get_backend,
    get_backend_class,
)
from harness.errors import BenchError
from harness.isolation.executor import Executor, WorkerFailure
from harness.measurement.environment import capture_environment
from harness.results.config import RunConfig
from harness.results.schema import CaseResult, RunRecord, RunStatus
from harness.results.store import claim_run_path, prepare_out_dir, save_run
from harness.run.case import CaseSpec
from harness.run.plan import check_dtypes_supported, supported_dtype_names

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
def signals_raise() -> Iterator[None]:
    """Turn SIGINT/SIGTERM into RunInterrupted for the duration of the run."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise RunInterrupted(signum)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


class BackendFacts(BaseModel):
    """What the parent of a run needs to know of an accelerator backend, read in a worker
    process (`describe_backend`) so that the parent never holds a device context of its own
    (about 0.5 GiB on device 0 for CUDA, which rank 0's cases would then lack). Answers the
    parts of the Backend interface the parent uses."""

    name: str
    device_type: str
    dist_backend: str
    info: DeviceInfo
    """describe_with_settings() of the backend, in the worker."""
    dtypes: list[str]
    """The dtype names the backend supports."""

    def describe(self) -> DeviceInfo:
        return self.info

    def settings(self) -> dict[str, str]:
        return dict(self.info.settings)

    def supports(self, dtype: Any) -> bool:
        return any(DTYPES[name] == dtype for name in self.dtypes)


DESCRIBE_TIMEOUT_S = 600.0
"""Seconds the worker may take to start the backend and describe it (a first runtime start)."""


class FactsAnswer(BaseModel):
    """What `backend_facts_job` answers: the facts, or why the backend cannot be had."""

    facts: BackendFacts | None = None
    error: str = ""


def backend_facts_job(payload: str) -> str:
    """The isolation job that describes backend `payload` in a worker: a FactsAnswer as JSON."""
    try:
        backend = get_backend(payload)
    except BackendError as exc:
        return FactsAnswer(error=str(exc)).model_dump_json()
    facts = BackendFacts(
        name=backend.name,
        device_type=backend.device_type,
        dist_backend=backend.dist_backend,
        info=describe_with_settings(backend),
        dtypes=[name for name in DTYPES if backend.supports(DTYPES[name])],
    )
    return FactsAnswer(facts=facts).model_dump_json()


def describe_backend(name: str) -> Backend | BackendFacts:
    """The backend `name` for the parent of a run: the backend itself where it is the host
    (device type cpu: no device context to hold), else its BackendFacts read in a worker
    process. Raises BackendError as get_backend does."""
    cls = get_backend_class(name)
    if cls.device_type == "cpu":
        return get_backend(name)
    availability = backend_availability(cls)  # asks the driver; creates no device context
    if not availability.ok:
        raise BackendError(f"backend '{name}' is unavailable: {availability.explain()}")
    try:
        with Executor("case") as executor:
            raw = executor.run(backend_facts_job, name, DESCRIBE_TIMEOUT_S)
    except WorkerFailure as exc:
        raise BenchError(f"describing backend '{name}' in a worker failed: {exc}") from None
    answer = FactsAnswer.model_validate_json(raw)
    if answer.facts is None:
        raise BackendError(answer.error)
    return answer.facts


def new_record(
    config: RunConfig,
    command: list[str] | None,
    backend: Backend | BackendFacts,
    **extra: Any,
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
        device=describe_with_settings(backend),
        **extra,
    )


def open_run(config: RunConfig, command: list[str] | None) -> tuple[RunRecord, Path]:
    """Check the run's backend and dtypes, then claim its results file and save the new
    record there. Raises (BackendError, BenchError) for bad input before any file exists.
    An accelerator is described from a worker process (`describe_backend`)."""
    backend = describe_backend(config.backend)
    check_dtypes_supported(config, supported_dtype_names(backend))
    record = new_record(config, command, backend)
    path = claim_run_path(prepare_out_dir(config.out), record)
    save_run(record, path)
    return record, path


def describe_with_settings(backend: Backend | BackendFacts) -> DeviceInfo:
    """backend.describe() with backend.settings() added under `settings` (what describe()
    put there itself wins). A settings() that raises is recorded as the one setting
    `settings.error`, so the run goes on and says why the settings are missing. The fp32
    downcasts on now (`Backend.fp32_downcasts()`) go to `fp32_downcasts` (None when it
    raises), from which the fp32 MFU's peak is chosen."""
    info = backend.describe()
    try:
        found = {str(k): str(v) for k, v in backend.settings().items()}
    except Exception as exc:
        found = {"settings.error": f"{type(exc).__name__}: {exc}"}
    try:
        downcasts: list[str] | None = [str(d) for d in backend.fp32_downcasts()]
    except Exception:
        downcasts = None
    update = {"settings": {**found, **info.settings}, "fp32_downcasts": downcasts}
    return info.model_copy(update=update)


def finish(record: RunRecord, path: Path, status: RunStatus) -> RunOutcome:
    """Mark the run `status` (complete, or incomplete after a signal), stamp its end and
    write the file atomically."""
    record.status = status
    record.finished_at = datetime.now(timezone.utc)
    save_run(record, path)
    return RunOutcome(record=record, path=path)
