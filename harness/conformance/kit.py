"""Run every conformance check against one backend, each under a timeout and, by default, in
a worker process, so that a check which crashes the process fails alone."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass

from pydantic import BaseModel

from backends.base import DTYPES
from backends.registry import BackendError, call_with_timeout, get_backend
from harness.conformance import checks
from harness.conformance.checks import KitContext
from harness.conformance.outcome import CheckFailed, CheckResult, CheckSkipped, KitReport
from harness.isolation.executor import Executor, WorkerFailure
from harness.results.config import Isolation
from workloads.registry import all_workloads

DEFAULT_TIMEOUT_S = 120.0
"""Seconds one check may take before it fails as hung (the backend is then not trusted)."""


@dataclass(frozen=True)
class Check:
    """One row of the kit: a name, what it runs, and whether it must pass."""

    name: str
    run: Callable[[KitContext], str]
    required: bool = True


def plan_checks() -> list[Check]:
    """The checks, in order; dtype and placement checks are parametrized by the registered
    dtypes and workloads (so a workload added later is checked too)."""
    fixed = [
        Check("availability contract", checks.check_availability),
        Check("identity and device()", checks.check_identity),
        Check("describe()", checks.check_describe),
        Check("settings, energy and telemetry", checks.check_device_facts),
        Check("dist_backend", checks.check_dist_backend),
        Check("synchronize waits for queued work", checks.check_synchronize),
        Check("timer includes completion", checks.check_timer_completion),
        Check("timer vs host clock", checks.check_timer_accuracy),
        Check("peak memory and reset", checks.check_peak_memory),
        Check("seed", checks.check_seed),
        Check("prepare() keeps outputs", checks.check_prepare),
    ]
    dtypes = [
        Check(f"dtype {name}", functools.partial(checks.check_dtype, name=name)) for name in DTYPES
    ]
    placement = [
        Check(f"placement: {name}", functools.partial(checks.check_placement, workload_name=name))
        for name in all_workloads()
    ]
    return fixed + dtypes + placement


def run_check(check: Check, ctx: KitContext, timeout_s: float) -> CheckResult:
    """One check under a timeout; any exception is a failure with its type and message."""
    start = time.perf_counter()
    call = call_with_timeout(lambda: check.run(ctx), timeout_s, f"check-{check.name}")
    seconds = time.perf_counter() - start
    row = {"name": check.name, "required": check.required, "seconds": seconds}
    if not call.finished:
        reason = f"did not finish within {timeout_s:g} s (hung)"
        return CheckResult(status="fail", reason=reason, timed_out=True, **row)
    error = call.error
    if error is None:
        return CheckResult(status="pass", reason=str(call.value or ""), **row)
    if isinstance(error, CheckSkipped):
        return CheckResult(status="skip", reason=str(error), **row)
    if isinstance(error, CheckFailed):
        return CheckResult(status="fail", reason=str(error), **row)
    return CheckResult(status="fail", reason=f"{type(error).__name__}: {error}", **row)


WORKER_SLACK_S = 60.0
"""Extra seconds the parent waits on a worker beyond the check's own timeout (worker start)."""


class CheckJob(BaseModel):
    """One check to run in a worker process: plain data, sent as JSON."""

    backend: str
    check: str
    timeout_s: float


@functools.cache
def _worker_context(name: str, timeout_s: float) -> KitContext:
    """The backend under test in this worker process, started once per process."""
    return start_backend(name, timeout_s)


def run_check_job(job: CheckJob) -> CheckResult:
    """Run one named check in this (worker) process."""
    check = next(c for c in plan_checks() if c.name == job.check)
    return run_check(check, _worker_context(job.backend, job.timeout_s), job.timeout_s)


def check_job(payload: str) -> str:
    """The isolation job of one check: a CheckJob as JSON in, its CheckResult out."""
    return run_check_job(CheckJob.model_validate_json(payload)).model_dump_json()


def _isolated(check: Check, name: str, executor: Executor, timeout_s: float) -> CheckResult:
    """One check in the executor's worker; a crash or hang of the worker fails only it."""
    start = time.perf_counter()
    job = CheckJob(backend=name, check=check.name, timeout_s=timeout_s)
    try:
        answer = executor.run(check_job, job.model_dump_json(), timeout_s + WORKER_SLACK_S)
    except WorkerFailure as exc:
        row = {"name": check.name, "required": check.required}
        seconds = time.perf_counter() - start
        if exc.kind == "timeout":
            reason = f"did not finish within {timeout_s:g} s (hung)"
            return CheckResult(status="fail", reason=reason, timed_out=True, seconds=seconds, **row)
        reason = f"crashed the process running it: {exc}"
        return CheckResult(status="fail", reason=reason, seconds=seconds, **row)
    return CheckResult.model_validate_json(answer)


def start_backend(name: str, timeout_s: float) -> KitContext:
    """The named backend, created under a timeout; BackendError when it is unknown,
    unavailable, fails to start or hangs while starting."""
    call = call_with_timeout(lambda: get_backend(name), timeout_s, f"start-{name}")
    if not call.finished:
        raise BackendError(f"backend '{name}' did not start within {timeout_s:g} s.")
    if call.error is not None:
        if isinstance(call.error, BackendError):
            raise call.error
        raise BackendError(
            f"backend '{name}' failed to start: {type(call.error).__name__}: {call.error}"
        )
    assert call.value is not None
    return KitContext(name, call.value)


def run_kit(
    name: str,
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    on_result: Callable[[CheckResult], None] | None = None,
    isolate: Isolation = "worker",
) -> KitReport:
    """Every check against backend `name`. Raises BackendError (before any check) when the
    backend cannot be had. With `isolate` worker or case, checks run in a worker process (a
    check that crashes it fails alone; the next runs in a fresh worker); with none, in this
    process. After a check hangs the rest are skipped: the device may be wedged."""
    start = time.perf_counter()
    ctx = start_backend(name, timeout_s)
    results: list[CheckResult] = []
    hung: str | None = None
    with Executor(isolate) as executor:
        for check in plan_checks():
            if hung is not None:
                result = CheckResult(
                    name=check.name,
                    status="skip",
                    required=check.required,
                    reason=f"not run: '{hung}' hung",
                )
            elif isolate == "none":
                result = run_check(check, ctx, timeout_s)
            else:
                result = _isolated(check, name, executor, timeout_s)
            if result.timed_out:
                hung = hung or check.name
            results.append(result)
            if on_result is not None:
                on_result(result)
    return KitReport(backend=name, results=results, seconds=time.perf_counter() - start)
