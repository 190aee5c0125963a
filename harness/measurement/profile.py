"""`bench run --profile`: the top operators of a step, from the backend's profiler.

The step is profiled in iterations of its own (after the headline measurement) with the
backend's profiler (`Backend.profile_window`: torch.profiler, or torch_npu's on Ascend). Each
operator's time is its self time: device time where the device was profiled and kernels were
seen, else host self time (and the profile's note says why when device time was expected).
Operators are placed in the step by their ancestors in the profiler's call tree: inside an
autograd node (`MmBackward0`) they are backward and belong to that node's forward operator
(`mm`); inside `Optimizer.step` they are the optimizer, inside `Optimizer.zero_grad`
zero_grad; everything else is forward and belongs to itself.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

from backends.base import Backend
from harness.results.schema import OpProfile, ProfiledOp

PROFILE_TOP = 25
"""Operators kept per case."""

_EVALUATE = "autograd::engine::evaluate_function: "
_NODE = re.compile(r"^(\w+?)Backward\d*$")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def forward_name(op: str) -> str:
    """An aten operator's name as the forward operator it is: `aten::_log_softmax` ->
    `log_softmax`."""
    return op.removeprefix("aten::").lstrip("_")


def _snake(name: str) -> str:
    return _CAMEL.sub("_", name).lower().lstrip("_")


def backward_owner(node: str) -> str | None:
    """The forward operator an autograd node computes the gradient of (`MmBackward0` -> `mm`,
    `NativeLayerNormBackward0` -> `native_layer_norm`, the engine's other nodes such as
    `torch::autograd::AccumulateGrad` -> `accumulate_grad`), or None when `node` is not an
    autograd node."""
    name = node.removeprefix(_EVALUATE)
    match = _NODE.match(name)
    if match is not None:
        return _snake(match.group(1))
    if node.startswith(_EVALUATE) or name.startswith("torch::autograd::"):
        return _snake(name.rsplit("::", 1)[-1])
    return None


def place(name: str, ancestors: tuple[str, ...]) -> tuple[str, str]:
    """(phase, forward operator) of an operator call named `name` whose enclosing operators
    are `ancestors` (nearest first), from the call itself outwards (module docstring)."""
    for enclosing in (name, *ancestors):
        if enclosing.startswith("Optimizer.step"):
            return "optimizer", forward_name(name)
        if enclosing.startswith("Optimizer.zero_grad"):
            return "zero_grad", forward_name(name)
        owner = backward_owner(enclosing)
        if owner is not None:
            return "backward", owner
    return "forward", forward_name(name)


def profile_step(
    step: Callable[[], object],
    backend: Backend,
    *,
    iterations: int = 3,
    trace_path: Path | None = None,
    top: int = PROFILE_TOP,
) -> OpProfile:
    """Profile `iterations` calls of `step` with the backend's profiler
    (`Backend.profile_window`); return the `top` operators per step by time (module
    docstring), and write the trace to `trace_path` when given. Call it on a warm step
    (after its measurement): nothing is run unprofiled first, to keep `--profile`'s cost to
    the profiled calls. The profile ranks device time only when the backend's profiler
    returned device rows; otherwise host self time, with the window's note saying why where
    device time was expected."""
    window = backend.profile_window(step, iterations, trace_path)
    device = window.device_rows_seen()
    totals: dict[tuple[str, str, str], list[float]] = defaultdict(lambda: [0.0, 0.0])
    for row in window.rows:
        micros = row.device_us if device else row.host_us
        if micros <= 0:
            continue
        phase, owner = place(row.name, row.ancestors)
        entry = totals[(row.name, phase, owner)]
        entry[0] += micros
        entry[1] += 1
    total_s = sum(t for t, _ in totals.values()) / 1e6 / iterations
    ops = [
        ProfiledOp(
            name=name,
            phase=phase,
            forward_op=owner,
            seconds=micros / 1e6 / iterations,
            share=(micros / 1e6 / iterations) / total_s if total_s > 0 else 0.0,
            calls=calls / iterations,
        )
        for (name, phase, owner), (micros, calls) in totals.items()
    ]
    ops.sort(key=lambda op: op.seconds, reverse=True)
    return OpProfile(
        activities=window.activities,
        time_kind="device" if device else "self cpu",
        note=window.note,
        iterations=iterations,
        total_s=total_s,
        ops=ops[:top],
    )
