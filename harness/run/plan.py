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
from harness.results.config import RunConfig
from harness.results.schema import CaseKey
from harness.run.execute import CaseSpec
from workloads.base import MODES, PRESETS, Workload
from workloads.registry import all_workloads, get_workload

DEFAULT_SUITE: tuple[str, ...] = ("mlp", "convnet", "gpt", "dit", "matmul", "bandwidth")
"""What `bench run` measures when no workload is named (those that are registered)."""

PRESET_SUITES: dict[str, tuple[str, ...]] = {
    "tiny": (*DEFAULT_SUITE[:3], "llama", "moe", *DEFAULT_SUITE[3:]),
}
"""Presets whose default suite differs: the tiny suite adds the llama and moe decoders (at
small they would take the CPU default run past its time budget; name them to run them)."""

RUN_DTYPES: tuple[str, ...] = ("fp32", "bf16", "fp16")


def default_workloads(preset: str = "small") -> list[str]:
    """The default suite of `preset`, restricted to the workloads registered here."""
    known = all_workloads()
    return [name for name in PRESET_SUITES.get(preset, DEFAULT_SUITE) if name in known]


def _check_choices(kind: str, given: list[str], valid: tuple[str, ...] | list[str]) -> None:
    for value in given:
        if value not in valid:
            raise BenchError(f"unknown {kind} '{value}'; choose from: {', '.join(valid)}.")


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

    Raises BenchError (or WorkloadError) naming the valid choices for any bad input.
    """
    if CONVERGE_MODE in config.modes:
        timed = [m for m in config.modes if m != CONVERGE_MODE]
        if not timed:
            return []
        config = config.model_copy(update={"modes": timed})
    names = config.workloads or default_workloads(config.preset)
    workloads = [get_workload(name) for name in names]
    _check_choices("mode", config.modes, MODES)
    _check_choices("dtype", config.dtypes, RUN_DTYPES)
    _check_choices("preset", [config.preset], PRESETS)
    for batch in config.batches:
        if batch <= 0:
            raise BenchError(f"batch sizes must be positive integers, got {batch}.")
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
    return specs


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
    _check_choices("dtype", config.dtypes, RUN_DTYPES)
    _check_choices("preset", [config.preset], PRESETS)
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
