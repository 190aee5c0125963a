"""Fidelity checks as part of `bench run`: which checks a run makes, and running them in the
run's worker isolation so that a crash or hang is a failed check, not a dead run."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from harness.fidelity.jobs import (
    FidelitySpec,
    TrajectoryAnswer,
    TrajectorySpec,
    failed_fidelity,
    fidelity_job,
    trajectory_job,
)
from harness.fidelity.trajectory import (
    Baseline,
    Trajectory,
    honest_is_reference,
    honest_name,
    parse_reference,
)
from harness.isolation.executor import Executor, WorkerFailure
from harness.results.config import RunConfig
from harness.results.fidelity import (
    FIDELITY_WORKLOADS,
    FidelityResult,
    fidelity_steps,
)
from harness.results.schema import RunRecord
from harness.results.store import save_run
from harness.run.plan import default_workloads, split_params
from workloads.registry import all_workloads, get_workload

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
    preset = config.defaults.fidelity_preset
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


class BaselineCache:
    """The trusted runs of a run's checks, each trained once through the executor: the
    reference per (workload, preset, parameters, seed, steps, reference), the honest
    low-precision run per those and the dtype. A run that could not be trained is not
    cached: the check then trains it itself (and reports what goes wrong)."""

    def __init__(self, executor: Executor, timeout_s: float) -> None:
        self.executor = executor
        self.timeout_s = timeout_s
        self.runs: dict[str, Trajectory | None] = {}
        self.trained = 0
        """Trajectories this cache trained (each shared by every check that needs it)."""

    def _get(self, spec: TrajectorySpec) -> Trajectory | None:
        key = spec.model_dump_json()
        if key not in self.runs:
            try:
                answer = TrajectoryAnswer.model_validate_json(
                    self.executor.run(trajectory_job, key, self.timeout_s)
                )
            except WorkerFailure:
                answer = TrajectoryAnswer(error="worker failure")
            self.runs[key] = answer.trajectory
            self.trained += answer.trajectory is not None
        return self.runs[key]

    def baseline(self, spec: FidelitySpec) -> Baseline | None:
        """The reference and honest runs of `spec`'s check (None when either failed)."""
        if spec.steps is None:
            return None
        common = TrajectorySpec(
            workload=spec.workload,
            preset=spec.preset,
            steps=spec.steps,
            reference=spec.reference,
            seed=spec.seed,
            batch=spec.batch,
            params=spec.params,
        )
        reference = self._get(common)
        if reference is None:
            return None
        if spec.band == "table":
            return Baseline(reference=reference)
        if honest_is_reference(spec.dtype, spec.reference):
            honest: Trajectory | None = reference
        else:
            honest = self._get(common.model_copy(update={"dtype": spec.dtype}))
        if honest is None:
            return None
        return Baseline(
            reference=reference, honest=honest, honest_name=honest_name(spec.dtype, spec.reference)
        )


def run_fidelity_checks(
    executor: Executor,
    specs: list[FidelitySpec],
    record: RunRecord,
    path: Path,
    timeout_s: float,
    progress: FidelityProgressFn | None = None,
) -> None:
    """Run each check through `executor` (at most `timeout_s` each:
    RunConfig.fidelity_timeout, and as much for each trusted run it needs), appending to
    `record.fidelity` and saving the file after every check. The reference and honest runs
    are trained once and shared by every check that compares against them (BaselineCache)."""
    cache = BaselineCache(executor, timeout_s)
    for index, spec in enumerate(specs):
        if progress:
            progress(index, len(specs), spec, None)
        job = spec.model_copy(update={"baseline": cache.baseline(spec)})
        try:
            answer = executor.run(fidelity_job, job.model_dump_json(), timeout_s)
            result = FidelityResult.model_validate_json(answer)
        except WorkerFailure as exc:
            result = failed_fidelity(spec, f"{exc.kind}: {exc}")
        record.fidelity.append(result)
        save_run(record, path)
        if progress:
            progress(index, len(specs), spec, result)
