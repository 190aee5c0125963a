"""The Workload contract: a model family that builds timed steps on any backend.

A workload never names a device family: it receives a BuildContext (backend, device, dtype,
batch, preset, parameters, seed) and returns an Instance whose `step(mode)` closures the
harness times.
"""

from __future__ import annotations

import contextlib
import copy
from abc import ABC, abstractmethod
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, ClassVar, TypeVar

import torch
from pydantic import BaseModel, ConfigDict, Field

from backends.base import DTYPES, Backend
from workloads.serving import Server


class WorkloadError(Exception):
    """Bad workload input (name, mode, preset, parameter); the message names valid choices."""


def mode_error(workload: str, mode: str, modes: tuple[str, ...]) -> WorkloadError:
    """The error for a mode that `workload` does not have, naming the modes it has."""
    return WorkloadError(f"workload '{workload}' has no mode '{mode}'; it has: {', '.join(modes)}.")


class CaseUnsupported(Exception):
    """Raised by `Workload.build` when the case cannot run in this setting (e.g. a collective
    in a single process); the case is recorded as `unsupported` with this message."""


class Work(BaseModel):
    """Items processed by one step and their unit (samples, tokens, images, bytes, FLOP)."""

    items: float
    unit: str


class Routing(BaseModel):
    """The experts a mixture-of-experts training step sent its tokens to."""

    n_expert: int
    top_k: int
    experts: list[list[int]]
    """Per MoE layer: each token's top_k expert ids in ascending order, token after token."""


class FidelityStep(BaseModel):
    """What one training step on real data reports for fidelity checks."""

    loss: float
    grad_norm: float
    group_grad_norms: dict[str, float] = Field(default_factory=dict)
    """Gradient norm of each parameter group (embeddings, attention, mlp, conv, norms, head;
    see workloads.training.parameter_groups), where the instance knows its groups."""
    routing: Routing | None = None
    """Mixture-of-experts workloads: the step's routing decisions (routing fidelity)."""


ContextT = TypeVar("ContextT", bound="BuildContext")

TRAIN_MODE = "train"
"""The mode that trains: it keeps fp32 master weights (autocast computes in the case dtype)."""


def weight_dtype(dtype_name: str, mode: str | None) -> torch.dtype:
    """The dtype a model's parameters are built in, the one rule for every model workload:
    fp32 master weights for training (and where the mode is not known: a context built for
    any mode), the case dtype itself for the inference modes (infer, prefill, decode, ...)
    in a reduced precision (bf16, fp16), since they never update their weights; fp32 for
    wider case dtypes (autocast does not run those). Buffers (rotary tables, noise schedules)
    are not cast, except batch-norm statistics (`cast_parameters`)."""
    case = DTYPES[dtype_name]
    if mode is None or mode == TRAIN_MODE or case.itemsize >= 4:
        return torch.float32
    return case


def weight_bytes(dtype_name: str, mode: str | None) -> int:
    """Bytes per parameter as built (`weight_dtype`): what memory estimates count."""
    return weight_dtype(dtype_name, mode).itemsize


def cast_parameters(model: torch.nn.Module, dtype: torch.dtype) -> None:
    """Put every floating-point parameter of `model` in `dtype`, in place (shared parameters,
    such as a tied head, stay shared), and the running statistics of its batch norms, which
    torch's batch_norm wants in its weights' dtype. Other buffers keep their dtype."""
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.is_floating_point() and parameter.dtype != dtype:
                parameter.data = parameter.data.to(dtype)
        for module in model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                for name, buffer in module.named_buffers(recurse=False):
                    if buffer.is_floating_point():
                        setattr(module, name, buffer.to(dtype))


class BuildContext(BaseModel):
    """Everything a workload needs to build one case; nothing device-specific is named."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    backend: Backend
    dtype_name: str
    batch_size: int
    preset: str
    params: dict[str, Any]
    seed: int = 0
    compile: bool = False
    mode: str | None = None
    """The mode the case is built for; it decides the weights' dtype (`weight_dtype`). None:
    a model that may run any mode (fp32 weights)."""
    alive_with: list[tuple[str, str]] = Field(default_factory=list)
    """(mode, dtype) of the other copies of this model (same workload, preset and parameters)
    the run keeps built in this process while this case is built: what a workload's memory
    estimate adds to its own copy (harness.run.schedule.alive_together)."""

    @classmethod
    def seeded(
        cls: type[ContextT],
        backend: Backend,
        *,
        dtype_name: str,
        batch_size: int,
        preset: str,
        params: dict[str, Any],
        seed: int = 0,
        compile: bool = False,
        mode: str | None = None,
        alive_with: list[tuple[str, str]] | None = None,
    ) -> ContextT:
        """The context of one case, after seeding `backend` (and torch) with `seed`: the one
        way the harness builds a context, so every build starts from the same random state.
        Called on a subclass, it builds that subclass (the distributed context)."""
        backend.seed(seed)
        return cls(
            backend=backend,
            dtype_name=dtype_name,
            batch_size=batch_size,
            preset=preset,
            params=params,
            seed=seed,
            compile=compile,
            mode=mode,
            alive_with=alive_with or [],
        )

    @property
    def device(self) -> torch.device:
        return self.backend.device()

    @property
    def dtype(self) -> torch.dtype:
        return DTYPES[self.dtype_name]

    @property
    def weight_dtype(self) -> torch.dtype:
        """The dtype this case's model parameters are built in (`weight_dtype`)."""
        return weight_dtype(self.dtype_name, self.mode)

    def autocast(self) -> Any:
        """The backend's mixed-precision context for this case's dtype."""
        return self.backend.autocast(self.dtype)

    def materialize(self, build: Callable[[], torch.nn.Module]) -> torch.nn.Module:
        """Build a model on the CPU under this case's seed, put its parameters in the case's
        weight dtype (`weight_dtype`: fp32 for training, the case dtype for inference), move
        it to the device, prepare it.

        Building on the CPU makes the initial weights identical on every backend; casting
        before the move means the device never holds an fp32 copy of an inference model.
        """
        torch.manual_seed(self.seed)
        model = build()
        cast_parameters(model, self.weight_dtype)
        model = model.to(self.device)
        return self.backend.prepare(model)

    def for_training(self, model: torch.nn.Module) -> torch.nn.Module:
        """The module a training step must call: `model` itself in a single process; the
        distributed harness replaces this hook with a data-parallel wrapper under --nproc > 1.

        Inference steps call the plain model (replicas run independently)."""
        return model

    def compiled(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """`fn` through torch.compile when the case asks for it, else unchanged."""
        return torch.compile(fn) if self.compile else fn


PhaseHook = Callable[[str], AbstractContextManager[object]]
"""`phase(name)`: the context a staged step runs its phase `name` in (a timer's, or none)."""


def no_phase(name: str) -> AbstractContextManager[object]:
    """The PhaseHook that times nothing: the plain, unstaged step."""
    return _NO_PHASE


_NO_PHASE = contextlib.nullcontext()


class Instance(ABC):
    """A built workload on one backend: timed steps, their FLOPs and their work."""

    last: torch.Tensor | None = None
    """The last output or loss of a step, checked for NaN/Inf after timing."""

    @abstractmethod
    def step(self, mode: str) -> Callable[[], None]:
        """The closure timed for `mode`: one forward (infer), one full training step, ..."""

    @abstractmethod
    def flops(self, mode: str) -> float | None:
        """FLOPs of one step of `mode` (analytic), or None where FLOPs do not apply."""

    @abstractmethod
    def work(self, mode: str) -> Work:
        """Items processed by one step of `mode`."""

    def bytes_moved(self, mode: str) -> float | None:
        """Bytes of memory traffic of one step, where the workload knows it (probes)."""
        return None

    def extra_metrics(self, mode: str, seconds_per_step: float) -> dict[str, float]:
        """Workload-specific figures derived from the step time (e.g. time per output token)."""
        return {}

    def placement_tensors(self) -> dict[str, torch.Tensor] | None:
        """Tensors that must live on the backend's device (weights, step inputs), checked by
        `bench check-backend`. None (default): the kit inspects the instance's attributes
        (modules, tensors, tuples/lists/dicts of tensors); override it when the instance
        keeps host-side data on purpose."""
        return None

    def fidelity_step(self, index: int) -> FidelityStep | None:
        """One training step on the index-th batch of real data; None if not supported."""
        return None

    def optimizer_traffic(self) -> tuple[float, str] | None:
        """Bytes one optimizer step reads and writes, with how they were counted in words;
        None for instances that do not train."""
        return None

    def staged_step(self, mode: str, phase: PhaseHook) -> Callable[[], None] | None:
        """The step of `mode` with each of its phases run inside `phase(name)` (names from
        `harness.results.schema.PHASES`: forward, backward, optimizer, zero_grad, ...), doing
        the same work as `step(mode)`; None when the mode has no phases to tell apart."""
        return None

    def server(self, max_batch: int) -> Server | None:
        """A server answering requests one at a time or batched up to `max_batch` (workloads/
        serving.py), for the inference scenarios; None when the workload does not serve."""
        return None

    def stateful(self) -> dict[str, Any]:
        """The objects whose state a training step changes, by name: each has `state_dict()`
        and `load_state_dict()`. Default: the instance's attributes that are modules,
        optimizers or GradScalers; override to add what the default cannot see."""
        kinds = (torch.nn.Module, torch.optim.Optimizer, torch.amp.GradScaler)
        found: dict[str, Any] = {}
        seen: set[int] = set()
        for name, value in vars(self).items():
            if isinstance(value, kinds) and id(value) not in seen:
                seen.add(id(value))
                found[name] = value
        return found

    def snapshot(self) -> dict[str, Any]:
        """A copy of the training state (`stateful()`'s state dicts and torch's host RNG),
        which `restore` puts back: every round of a training case starts from it."""
        state = {name: copy.deepcopy(obj.state_dict()) for name, obj in self.stateful().items()}
        return {"objects": state, "rng": torch.get_rng_state()}

    def restore(self, snapshot: dict[str, Any]) -> None:
        """Put back the training state `snapshot()` copied (the snapshot stays reusable:
        optimizers get a copy, since they keep the tensors they are given)."""
        for name, obj in self.stateful().items():
            obj.load_state_dict(copy.deepcopy(snapshot["objects"][name]))
        torch.set_rng_state(snapshot["rng"])

    def nonfinite_reason(self) -> str | None:
        """Why the last step's output is not usable (NaN/Inf), or None when it is finite."""
        if self.last is None or not torch.is_floating_point(self.last):
            return None
        if bool(torch.isfinite(self.last).all()):
            return None
        return "the step produced NaN or Inf values"


class Workload(ABC):
    """A model family or probe. Subclasses declare modes and presets and build instances."""

    name: ClassVar[str]
    description: ClassVar[str] = ""
    version: ClassVar[str] = "1"
    """Bumped whenever the model, data or step changes: results of different versions differ."""
    modes: ClassVar[tuple[str, ...]] = ("infer", "train")
    presets: ClassVar[dict[str, dict[str, Any]]]
    """preset name -> default parameters; every preset has a `batch` entry."""

    def resolve_params(self, preset: str, overrides: dict[str, str]) -> dict[str, Any]:
        """The preset's parameters with `overrides` applied, each parsed to its default's type."""
        if preset not in self.presets:
            raise WorkloadError(
                f"workload '{self.name}' has no preset '{preset}'; "
                f"choose one of: {', '.join(self.presets)}."
            )
        params = dict(self.presets[preset])
        for key, raw in overrides.items():
            if key not in params:
                raise WorkloadError(
                    f"workload '{self.name}' has no parameter '{key}'; "
                    f"its parameters are: {', '.join(sorted(params))}."
                )
            params[key] = _parse_like(params[key], raw, f"{self.name}.{key}")
        self.validate_params(params)
        return params

    def validate_params(self, params: dict[str, Any]) -> None:
        """Raise WorkloadError when parameters are inconsistent (e.g. d_model % n_head)."""
        for key, value in params.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value <= 0:
                raise WorkloadError(f"parameter {self.name}.{key} must be > 0, got {value}.")

    @abstractmethod
    def build(self, ctx: BuildContext) -> Instance:
        """Build the model, data and optimizer of one case on ctx's backend."""

    def build_seeded(
        self, backend: Backend, dtype: str, preset: str, params: dict[str, Any], seed: int
    ) -> Instance:
        """An instance for training outside the timed pipeline (fidelity trajectories,
        training to a target): built under `seed` with `params["batch"]`, for no one mode, so
        its weights are fp32 masters (`weight_dtype`) and identical on every device."""
        ctx = BuildContext.seeded(
            backend,
            dtype_name=dtype,
            batch_size=params["batch"],
            preset=preset,
            params=params,
            seed=seed,
        )
        return self.build(ctx)


def _parse_like(default: Any, raw: str, label: str) -> Any:
    kind = type(default)
    try:
        if kind is bool:
            lowered = raw.strip().lower()
            if lowered not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                raise ValueError(raw)
            return lowered in ("1", "true", "yes", "on")
        return kind(raw)
    except ValueError:
        raise WorkloadError(
            f"parameter {label} expects a {kind.__name__} (default {default!r}), got '{raw}'."
        ) from None
