"""Fidelity's training: one workload trained N steps on a device, recording per-step losses,
gradient norms (global and per parameter group) and MoE routing; the trusted runs a check
compares against (the reference, and the honest low-precision run).

Every run starts from identical initial weights (built on the CPU under one seed by
BuildContext.materialize) and trains on identical batches of real data
(`Instance.fidelity_step(index)`).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import torch
from pydantic import BaseModel, Field

from backends.base import Backend
from backends.cpu import CPUBackend
from harness.errors import BenchError
from harness.results.fidelity import BandSource, FidelityResult
from workloads.base import Routing, Workload

REFERENCES: tuple[str, ...] = ("cpu:fp32", "cpu:fp64")


class _ReferenceFP64(CPUBackend):
    """The CPU running models in float64: parameters and buffers converted, floating inputs
    cast on entry. Weights are still built in fp32 under the seed, then upcast exactly."""

    name = "cpu-fp64-reference"

    def prepare(self, model: torch.nn.Module) -> torch.nn.Module:
        model = model.to(torch.float64)

        def cast_inputs(
            module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
        ) -> tuple[tuple[Any, ...], dict[str, Any]]:
            return (
                tuple(_to_fp64(a) for a in args),
                {k: _to_fp64(v) for k, v in kwargs.items()},
            )

        model.register_forward_pre_hook(cast_inputs, with_kwargs=True)
        return model


def _to_fp64(value: Any) -> Any:
    if isinstance(value, torch.Tensor) and torch.is_floating_point(value):
        return value.to(torch.float64)
    return value


def parse_reference(reference: str) -> tuple[Backend, str]:
    """The reference backend and the dtype name its BuildContext uses; BenchError naming the
    choices for anything but cpu:fp32 and cpu:fp64."""
    if reference not in REFERENCES:
        raise BenchError(
            f"unknown --reference '{reference}'; choose from: {', '.join(REFERENCES)}."
        )
    if reference == "cpu:fp64":
        return _reference_device(_ReferenceFP64), "fp32"
    return _reference_device(CPUBackend), "fp32"


@functools.cache
def _reference_device(kind: type[CPUBackend]) -> CPUBackend:
    """One instance per reference device kind, reused by every check of the process: creating
    a CPU backend collects garbage and trims the heap (measurement hygiene), which the
    reference and honest runs of every check would otherwise pay again."""
    return kind()


class Trajectory(BaseModel):
    """Per-step losses and gradient norms of one training run (None where not finite)."""

    loss: list[float | None] = Field(default_factory=list)
    grad_norm: list[float | None] = Field(default_factory=list)
    group_grad_norm: dict[str, list[float | None]] = Field(default_factory=dict)
    """Per parameter group (workloads.training.parameter_groups), per step."""
    first_nonfinite: int | None = None
    skipped_steps: list[int] = Field(default_factory=list)
    supported: bool = True
    routing: list[Routing] = Field(default_factory=list)
    """Mixture-of-experts workloads: each step's routing decisions (not stored)."""


class Baseline(BaseModel):
    """The trusted runs a check compares against, shareable between checks: the reference,
    and the honest low-precision run (the target dtype on the reference device; None where
    there is none)."""

    reference: Trajectory
    honest: Trajectory | None = None
    honest_name: str | None = None


def honest_name(dtype: str, reference: str) -> str:
    """The honest run's name, e.g. `cpu:bf16`."""
    return f"{reference.partition(':')[0]}:{dtype}"


def honest_is_reference(dtype: str, reference: str) -> bool:
    """Whether the honest run is the reference run itself (fp32 against cpu:fp32)."""
    return honest_name(dtype, reference) == reference


def train_trajectory(
    backend: Backend,
    workload: Workload,
    dtype: str,
    preset: str,
    params: dict[str, Any],
    seed: int,
    steps: int,
) -> Trajectory:
    """Train `steps` steps of `workload` on `backend` from the seed's weights, batch i at step i.

    Stops at the first NaN/Inf loss or gradient norm, except that in fp16 a finite loss with
    an overflowing gradient is a step the loss scaler skipped by design (workloads.training.
    Trainer uses a GradScaler): it is recorded in `skipped_steps` and training goes on.
    `supported` is False when the workload has no fidelity step."""
    instance = workload.build_seeded(backend, dtype, preset, params, seed)
    out = Trajectory()
    for index in range(steps):
        step = instance.fidelity_step(index)
        if step is None:
            return Trajectory(supported=False)
        loss_ok, norm_ok = math.isfinite(step.loss), math.isfinite(step.grad_norm)
        out.loss.append(step.loss if loss_ok else None)
        out.grad_norm.append(step.grad_norm if norm_ok else None)
        for group, value in step.group_grad_norms.items():
            out.group_grad_norm.setdefault(group, [None] * index).append(
                value if math.isfinite(value) else None
            )
        if step.routing is not None:
            out.routing.append(step.routing)
        if loss_ok and not norm_ok and dtype == "fp16":
            out.skipped_steps.append(index)
        elif not (loss_ok and norm_ok):
            out.first_nonfinite = index
            break
    return out


def routing_match(target: Routing, reference: Routing) -> float:
    """The fraction of (layer, token) pairs whose top-k expert set is the same in both."""
    k = target.top_k
    a = torch.tensor(target.experts).reshape(-1, k)
    b = torch.tensor(reference.experts).reshape(-1, k)
    if a.shape != b.shape or not a.numel():
        return 0.0
    return float((a == b).all(dim=-1).float().mean())


def expert_load(routing: Routing) -> list[int]:
    """Token slots routed to each expert, summed over the MoE layers."""
    ids = torch.tensor(routing.experts, dtype=torch.long).reshape(-1)
    return [int(n) for n in torch.bincount(ids, minlength=routing.n_expert)]


def record_routing(result: FidelityResult, target: Trajectory, reference: Trajectory) -> None:
    """Store the two runs' routing on `result` (MoE workloads only): the match per step and
    the expert loads (the judge derives the largest mismatch from them)."""
    if not target.routing or not reference.routing:
        return
    result.routing_match = [
        routing_match(t, r) for t, r in zip(target.routing, reference.routing, strict=False)
    ]
    result.target_expert_load = [expert_load(r) for r in target.routing]
    result.reference_expert_load = [expert_load(r) for r in reference.routing]


def max_abs_difference(a: Trajectory, b: Trajectory) -> tuple[bool, float]:
    """Whether two runs are bitwise equal over the steps of the shorter one, and their largest
    absolute difference there."""
    n = min(len(a.loss), len(b.loss))
    pairs = list(zip(a.loss[:n] + a.grad_norm[:n], b.loss[:n] + b.grad_norm[:n], strict=True))
    equal = all(x == y for x, y in pairs)
    diffs = [abs(x - y) for x, y in pairs if x is not None and y is not None]
    return equal, max(diffs, default=0.0)


def resolved_params(
    model: Workload, preset: str, params: dict[str, Any] | None, batch: int | None
) -> dict[str, Any]:
    """The preset's parameters with `params` (already typed) and `batch` over them; raises
    WorkloadError for a bad preset or parameter."""
    full = {**model.resolve_params(preset, {}), **(params or {})}
    if batch is not None:
        full["batch"] = batch
    model.validate_params(full)
    return full


def train_baseline(
    workload: Workload,
    dtype: str,
    preset: str,
    params: dict[str, Any],
    seed: int,
    steps: int,
    reference: str,
    band: BandSource = "measured",
) -> Baseline:
    """Train the reference and, for a measured band, the honest run (the target dtype on the
    reference device; the reference run itself for fp32 against cpu:fp32)."""
    ref_backend, ref_dtype = parse_reference(reference)
    ref = train_trajectory(ref_backend, workload, ref_dtype, preset, params, seed, steps)
    if band == "table":
        return Baseline(reference=ref)
    return Baseline(
        reference=ref,
        honest=honest_trajectory(workload, dtype, preset, params, seed, steps, reference, ref),
        honest_name=honest_name(dtype, reference),
    )


def honest_trajectory(
    workload: Workload,
    dtype: str,
    preset: str,
    params: dict[str, Any],
    seed: int,
    steps: int,
    reference: str,
    reference_run: Trajectory | None = None,
) -> Trajectory:
    """The honest low-precision run: `dtype` on the reference device (the CPU), no prepare()
    beyond the CPU's own. `reference_run` is returned as is when it is that same run."""
    if reference_run is not None and honest_is_reference(dtype, reference):
        return reference_run
    return train_trajectory(
        _reference_device(CPUBackend), workload, dtype, preset, params, seed, steps
    )
