"""Turn a RunConfig into the list of cases to run, rejecting bad input with clear messages."""

from __future__ import annotations

from typing import Any

from backends.base import DTYPES
from harness.convergence.job import ConvergeSpec, check_reference
from harness.convergence.settings import (
    CONVERGE_MODE,
    CONVERGE_SUITE,
    CONVERGE_WORKLOADS,
    converge_settings,
)
from harness.errors import BenchError
from harness.results.config import RUN_DTYPES, RunConfig
from harness.results.presets import PRESETS, PresetName
from harness.results.schema import CaseKey
from harness.run.case import CaseSpec, ModelCopy
from harness.run.schedule import alive_together
from workloads.base import Workload
from workloads.registry import all_workloads, get_workload


def default_workloads(preset: PresetName = "small") -> list[str]:
    """The default suite of `preset`, restricted to the workloads registered here."""
    known = all_workloads()
    return [name for name in PRESETS[preset].suite if name in known]


def split_params(params: dict[str, str], workloads: list[Workload]) -> dict[str, dict[str, str]]:
    """Route `key=value` to every selected workload that has `key`, and `name.key=value` to one.

    Raises BenchError for a key no selected workload has."""
    routed: dict[str, dict[str, str]] = {w.name: {} for w in workloads}
    for raw_key, value in params.items():
        target, _, key = raw_key.rpartition(".")
        if target:
            if target not in routed:
                raise BenchError(
                    f"--param {raw_key}: workload '{target}' is not selected; "
                    f"selected: {', '.join(routed)}."
                )
            routed[target][key] = value
            continue
        owners = [w.name for w in workloads if any(key in p for p in w.presets.values())]
        if not owners:
            valid = sorted({k for w in workloads for p in w.presets.values() for k in p})
            raise BenchError(
                f"--param {key}: no selected workload has this parameter; valid: "
                f"{', '.join(valid)}."
            )
        for owner in owners:
            routed[owner][key] = value
    return routed


def plan_cases(config: RunConfig) -> list[CaseSpec]:
    """Every case of the run: workload x supported mode x dtype x batch, in that order.

    The config validated its own options; this raises BenchError (or WorkloadError) naming
    the valid choices for what depends on the workloads: their names, modes and parameters.
    """
    if CONVERGE_MODE in config.modes:
        timed = [m for m in config.modes if m != CONVERGE_MODE]
        if not timed:
            return []
        config = config.model_copy(update={"modes": timed})
    names = config.workloads or default_workloads(config.preset)
    workloads = [get_workload(name) for name in names]
    if config.modes and not any(m in w.modes for w in workloads for m in config.modes):
        offered = sorted({m for w in workloads for m in w.modes})
        raise BenchError(
            f"no selected workload supports mode(s) {', '.join(config.modes)}; "
            f"they offer: {', '.join(offered)}."
        )
    routed = split_params(config.params, workloads)
    measure = config.measure_settings()
    specs: list[CaseSpec] = []
    for workload in workloads:
        params: dict[str, Any] = workload.resolve_params(config.preset, routed[workload.name])
        modes = [m for m in (config.modes or workload.modes) if m in workload.modes]
        for mode in modes:
            for dtype in config.dtypes:
                for batch in config.batches or [params["batch"]]:
                    key = CaseKey(
                        workload=workload.name,
                        workload_version=workload.version,
                        mode=mode,
                        dtype=dtype,
                        batch=batch,
                        preset=config.preset,
                        params={k: v for k, v in params.items() if k != "batch"},
                        compile=config.compile,
                        nproc=config.nproc,
                    )
                    specs.append(
                        CaseSpec(
                            backend=config.backend,
                            key=key,
                            params=params,
                            seed=config.seed,
                            measure=measure,
                            profile=config.profile or config.profile_trace,
                            trace_dir=str(config.out / "traces") if config.profile_trace else None,
                        )
                    )
    return _with_copies_alive(config, specs)


def _with_copies_alive(config: RunConfig, specs: list[CaseSpec]) -> list[CaseSpec]:
    """`specs` told which copies of their model the run keeps built beside them
    (`alive_together` under the run's interleaving) and whether they are built alone. A
    distributed run or a fresh process per job (`--isolate case`) builds one case at a
    time."""
    interleave = config.interleave_mode()
    if config.distributed or config.isolate == "case":
        interleave = "case"
    alive = alive_together([s.key for s in specs], interleave)
    return [
        spec.model_copy(
            update={
                "alive_with": [
                    ModelCopy(mode=specs[j].key.mode, dtype=specs[j].key.dtype) for j in others
                ],
                "built_alone": interleave == "case",
            }
        )
        for spec, others in zip(specs, alive, strict=True)
    ]


def check_dtypes_supported(config: RunConfig, supported: list[str]) -> None:
    """Refuse a run none of whose dtypes the backend can run (a mix gives 'unsupported' cases)."""
    if not any(d in supported for d in config.dtypes):
        raise BenchError(
            f"backend '{config.backend}' cannot run {', '.join(config.dtypes)}; "
            f"it supports: {', '.join(supported)}."
        )


def supported_dtype_names(backend: Any) -> list[str]:
    """The dtype names (of RUN_DTYPES) that `backend.supports()` accepts."""
    return [name for name in RUN_DTYPES if backend.supports(DTYPES[name])]


# --- Converge cases (`--mode converge`, harness.convergence) ------------------------------


def plan_converge(config: RunConfig) -> list[ConvergeSpec]:
    """The converge cases of the run: trainable workload x dtype (batch as the preset's, or
    each of --batch), when `converge` is among the modes; [] otherwise.

    Raises BenchError naming the valid choices for a workload that does not train to a
    target, a bad reference or bad converge options."""
    if CONVERGE_MODE not in config.modes:
        return []
    names = config.workloads or [n for n in CONVERGE_SUITE if n in all_workloads()]
    others = [m for m in config.modes if m != CONVERGE_MODE]
    untrainable = [n for n in names if n not in CONVERGE_WORKLOADS]
    if untrainable and not others:
        raise BenchError(
            f"--mode converge trains {', '.join(CONVERGE_WORKLOADS)}; "
            f"'{untrainable[0]}' does not train to a target."
        )
    check_reference(config.reference)
    settings = converge_settings(
        config.preset, config.seeds, config.target_step, config.soak_steps, config.soak_s
    )
    routed = split_params(config.params, [get_workload(n) for n in names])
    specs: list[ConvergeSpec] = []
    for name in names:
        if name not in CONVERGE_WORKLOADS:
            continue
        workload = get_workload(name)
        params = workload.resolve_params(config.preset, routed[name])
        for dtype in config.dtypes:
            for batch in config.batches or [params["batch"]]:
                key = CaseKey(
                    workload=name,
                    workload_version=workload.version,
                    mode=CONVERGE_MODE,
                    dtype=dtype,
                    batch=batch,
                    preset=config.preset,
                    params={k: v for k, v in params.items() if k != "batch"},
                )
                specs.append(
                    ConvergeSpec(
                        backend=config.backend,
                        key=key,
                        params={**params, "batch": batch},
                        seed=config.seed,
                        reference=config.reference,
                        settings=settings,
                    )
                )
    return specs
