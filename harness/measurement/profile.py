"""`bench run --profile`: the top operators of a step, from torch.profiler.

The step is profiled in iterations of its own (after the headline measurement) with the
backend's profiler activities. Each operator's time is its self time: device time where the
device was profiled and kernels were seen, else self CPU time. Operators are placed in the
step by their ancestors in the profiler's call tree: inside an autograd node (`MmBackward0`)
they are backward and belong to that node's forward operator (`mm`); inside
`Optimizer.step` they are the optimizer, inside `Optimizer.zero_grad` zero_grad; everything
else is forward and belongs to itself.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

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


def place(event: Any) -> tuple[str, str]:
    """(phase, forward operator) of a profiler event, from its ancestors (module docstring)."""
    node: Any = event
    while node is not None:
        name = node.name
        if name.startswith("Optimizer.step"):
            return "optimizer", forward_name(event.name)
        if name.startswith("Optimizer.zero_grad"):
            return "zero_grad", forward_name(event.name)
        owner = backward_owner(name)
        if owner is not None:
            return "backward", owner
        node = node.cpu_parent
    return "forward", forward_name(event.name)


def profile_step(
    step: Callable[[], object],
    backend: Backend,
    *,
    iterations: int = 3,
    trace_path: Path | None = None,
    top: int = PROFILE_TOP,
) -> OpProfile:
    """Profile `iterations` calls of `step` with the backend's activities; return the `top`
    operators per step by time (module docstring), and write the Chrome trace to
    `trace_path` when given. Call it on a warm step (after its measurement): nothing is
    run unprofiled first, to keep `--profile`'s cost to the profiled calls."""
    from torch.profiler import ProfilerActivity, profile

    activities = backend.profiler_activities()
    backend.synchronize()
    with profile(activities=activities) as prof:
        for _ in range(iterations):
            step()
        backend.synchronize()
    if trace_path is not None:
        trace_path.parent.mkdir(parents=True, exist_ok=True)
        prof.export_chrome_trace(str(trace_path))
    events = [e for e in prof.events() if not e.is_async]
    device = any(a != ProfilerActivity.CPU for a in activities)
    device = device and sum(e.self_device_time_total for e in events) > 0
    totals: dict[tuple[str, str, str], list[float]] = defaultdict(lambda: [0.0, 0.0])
    for event in events:
        micros = event.self_device_time_total if device else event.self_cpu_time_total
        if micros <= 0:
            continue
        phase, owner = place(event)
        entry = totals[(event.name, phase, owner)]
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
        activities=[a.name for a in activities],
        time_kind="device" if device else "self cpu",
        iterations=iterations,
        total_s=total_s,
        ops=ops[:top],
    )
