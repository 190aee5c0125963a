"""Fidelity checks as part of `bench run`: which checks a run makes, and running them in the
run's worker isolation so that a crash or hang is a failed check, not a dead run."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from harness.fidelity.check import (
    FIDELITY_STEPS,
    FIDELITY_WORKLOADS,
    FidelitySpec,
    failed_fidelity,
    fidelity_job,
    fidelity_steps,
    parse_reference,
)
from harness.isolation.executor import Executor, WorkerFailure
from harness.results.config import RunConfig
from harness.results.fidelity import FidelityResult
from harness.results.schema import RunRecord
from harness.results.store import save_run
from harness.run.plan import default_workloads, split_params
from workloads.registry import all_workloads, get_workload

TIMEOUT_FACTOR = 3.0
"""A fidelity check trains about three runs' worth of steps: it gets this many case timeouts."""

FidelityProgressFn = Callable[[int, int, FidelitySpec, FidelityResult | None], None]
"""Called before (result None) and after each check: index, total, spec, result."""


def plan_fidelity(config: RunConfig) -> list[FidelitySpec]:
    """One check per selected fidelity workload (FIDELITY_WORKLOADS; those registered) and run
    dtype, at the run's preset, or at `small` when the run's preset is larger (say so in the
    note). Empty when `config.fidelity` is off. Raises BenchError for a bad reference."""
    if not config.fidelity:
        return []
    parse_reference(config.reference)
    names = config.workloads or default_workloads(config.preset)
    known = all_workloads()
    chosen = [name for name in FIDELITY_WORKLOADS if name in names and name in known]
    if not chosen:
        return []
    preset = config.preset if config.preset in FIDELITY_STEPS else "small"
    note = (
        ""
        if preset == config.preset
        else f"the run's preset is {config.preset}; fidelity ran at {preset} to keep it bounded"
    )
    routed = split_params(config.params, [get_workload(n) for n in names if n in known])
    specs: list[FidelitySpec] = []
    for name in chosen:
        params = get_workload(name).resolve_params(preset, routed.get(name, {}))
        for dtype in config.dtypes:
            specs.append(
                FidelitySpec(
                    backend=config.backend,
                    workload=name,
                    dtype=dtype,
                    preset=preset,
                    steps=fidelity_steps(preset, config.fidelity_steps),
                    reference=config.reference,
                    seed=config.seed,
                    params=params,
                    note=note,
                )
            )
    return specs


def run_fidelity_checks(
    executor: Executor,
    specs: list[FidelitySpec],
    record: RunRecord,
    path: Path,
    timeout_s: float,
    progress: FidelityProgressFn | None = None,
) -> None:
    """Run each check through `executor` (at most TIMEOUT_FACTOR x the case timeout
    `timeout_s` each), appending to `record.fidelity` and saving the file after every check."""
    for index, spec in enumerate(specs):
        if progress:
            progress(index, len(specs), spec, None)
        try:
            answer = executor.run(fidelity_job, spec.model_dump_json(), timeout_s * TIMEOUT_FACTOR)
            result = FidelityResult.model_validate_json(answer)
        except WorkerFailure as exc:
            result = failed_fidelity(spec, f"{exc.kind}: {exc}")
        record.fidelity.append(result)
        save_run(record, path)
        if progress:
            progress(index, len(specs), spec, result)
