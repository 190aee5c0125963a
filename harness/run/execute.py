"""Run one case in the current process through the case pipeline (harness.run.pipeline).

A case is measured either in one go (`execute_case`, `case_job`) or in rounds (`round_job`):
a round job measures one case for one round and keeps the built case in this process's
cache (`_BUILT`), so the case's later rounds reuse it; `clear_cache_job` empties the cache.
The cache lives in whatever process runs the jobs (a worker, or the runner with
`--isolate none`); a fresh process simply rebuilds on its first round of a case. A case the
run builds alone (`CaseSpec.built_alone`, interleave `case`) empties the cache before it is
built, so no other model's memory is held beside it. A round job
returns the round's raw RoundResult; the parent folds a case's rounds (harness.run.fold).
"""

from __future__ import annotations

import functools
import gc

import torch

from backends.registry import get_backend, get_backend_class
from harness.errors import failed_result
from harness.measurement.guard import never_raises
from harness.measurement.timing import summarize
from harness.results.schema import CaseResult
from harness.run.case import CaseSpec, RoundResult, RoundSpec
from harness.run.fold import fold_rounds
from harness.run.pipeline import (
    BuiltCase,
    LocalStrategy,
    build_case,
    case_cache_key,
    measure_round,
    with_fallbacks,
)

LOCAL = LocalStrategy()


@functools.cache
def prime_process(backend: str) -> None:
    """Once per process (and backend): the backend's process-wide settings
    (`Backend.prepare_process`, e.g. the CPU's denormal handling, which threads inherit only
    when set before torch starts them), then one small forward, backward and AdamW step on
    the host and one bootstrap CI, so that the first case of a process does not pay (in time
    or in peak memory) for loading the kernels, thread pools and modules (scipy) that every
    case shares. Then
    the objects alive (torch's modules, ~330k of them once the optimizer has loaded dynamo)
    are frozen out of the garbage collector: the collections that keep memory readings clean
    cost ~0.2 s each otherwise, several per case."""
    get_backend_class(backend).prepare_process()
    summarize([1.0, 2.0, 3.0], iterations_per_sample=1)
    layer = torch.nn.Linear(512, 512)
    optimizer = torch.optim.AdamW(layer.parameters())
    with torch.inference_mode():
        layer(torch.randn(256, 512))
    layer(torch.randn(256, 512)).sum().backward()
    optimizer.step()
    del layer, optimizer
    gc.collect()
    gc.freeze()


def prime_job(payload: str) -> str:
    """The isolation preparation of a worker for the backend named by `payload`:
    `prime_process` there. Never raises: a failure is returned as text (and unused), so that
    the case that meets it again in `prime_process` fails with its own words."""
    try:
        prime_process(payload)
    except Exception as exc:  # the first case reports it (see the docstring)
        return f"{type(exc).__name__}: {exc}"
    return ""


_BUILT: dict[str, BuiltCase] = {}
"""Built cases of this process by `case_cache_key`; emptied by `clear_cache`."""


def clear_cache() -> None:
    """Drop every built case of this process and collect the garbage they leave."""
    _BUILT.clear()
    gc.collect()


def clear_cache_job(payload: str) -> str:
    """The isolation job that empties the worker's cache of built cases (payload unused)."""
    clear_cache()
    return ""


def failed_round(job: RoundSpec, kind: str, message: str) -> RoundResult:
    """The RoundResult of a round that produced no measurement (`kind` an ErrorKind)."""
    return failed_result(RoundResult, job.case.key, kind, message, round=job.round)


def execute_round(job: RoundSpec) -> RoundResult:
    """Measure one round of a case here, building it on a miss of this process's cache and
    reusing it after. Never raises for a failure of the case: exceptions, out-of-memory,
    NaN/Inf output and unsupported dtypes become failed rounds (and the case leaves the
    cache)."""
    cache_key = case_cache_key(job.case)

    def run() -> RoundResult:
        prime_process(job.case.backend)
        built = _BUILT.get(cache_key)
        if built is None:
            if job.case.built_alone:
                clear_cache()  # the run needs no other case alive: free its memory first
            built = build_case(job.case, get_backend(job.case.backend), LOCAL)
            _BUILT[cache_key] = built
        return measure_round(built, job, LOCAL)

    result = never_raises(
        lambda: with_fallbacks(run), lambda kind, msg: failed_round(job, kind, msg)
    )
    if result.status != "ok":
        _BUILT.pop(cache_key, None)
    return result


def execute_case(spec: CaseSpec) -> CaseResult:
    """Build and measure one case here in one round, and release it. Never raises for a
    failure of the case itself (see `execute_round`)."""
    try:
        result = execute_round(RoundSpec(case=spec, round=0, rounds=1))
    finally:
        _BUILT.pop(case_cache_key(spec), None)
    return fold_rounds(spec.key, [result], spec.measure.precision)


def case_job(payload: str) -> str:
    """The isolation job of one case: a CaseSpec as JSON in, its CaseResult as JSON out."""
    return execute_case(CaseSpec.model_validate_json(payload)).model_dump_json()


def round_job(payload: str) -> str:
    """The isolation job of one round of one case: a RoundSpec as JSON in, the round's
    RoundResult as JSON out."""
    return execute_round(RoundSpec.model_validate_json(payload)).model_dump_json()
