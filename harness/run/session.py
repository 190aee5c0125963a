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

from backends.base import Backend, DeviceInfo
from backends.registry import get_backend
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
        device=describe_with_settings(backend),
        **extra,
    )


def open_run(config: RunConfig, command: list[str] | None) -> tuple[RunRecord, Path]:
    """Check the run's backend and dtypes, then claim its results file and save the new
    record there. Raises (BackendError, BenchError) for bad input before any file exists."""
    backend = get_backend(config.backend)
    check_dtypes_supported(config, supported_dtype_names(backend))
    record = new_record(config, command, backend)
    path = claim_run_path(prepare_out_dir(config.out), record)
    save_run(record, path)
    return record, path


def describe_with_settings(backend: Backend) -> DeviceInfo:
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
