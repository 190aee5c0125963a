"""State-dependent cost: the within-round trend of a case's samples, and the denormal values
a training case leaves behind, which the CPU computes on through a slow path (the usual
cause of a CPU training step that slows as it trains)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import torch

from backends.cpu import DENORMALS_ENV, denormal_flush_coverage
from harness.results.schema import DenormalCount, Measurement, SampleTrend
from harness.stats import within_round_trend

_BITS: dict[torch.dtype, tuple[torch.dtype, int, int]] = {
    torch.float64: (torch.int64, 0x7FF0000000000000, 0x000FFFFFFFFFFFFF),
    torch.float32: (torch.int32, 0x7F800000, 0x007FFFFF),
    torch.float16: (torch.int16, 0x7C00, 0x03FF),
    torch.bfloat16: (torch.int16, 0x7F80, 0x007F),
}
"""Per dtype: the integer type of the same width, the exponent mask and the mantissa mask."""


def denormal_values(tensors: Iterable[torch.Tensor]) -> int:
    """How many elements of the floating-point `tensors` are denormal: x != 0 and
    |x| < torch.finfo(dtype).tiny, i.e. a zero exponent field and a nonzero mantissa. Read
    from the bits, so that a process that treats denormal inputs as zero (DAZ) still sees
    them; dtypes without denormals (fp8) count 0."""
    count = 0
    for tensor in tensors:
        layout = _BITS.get(tensor.dtype)
        if layout is None:
            continue
        integer, exponent, mantissa = layout
        bits = tensor.detach().contiguous().view(integer)
        count += int((((bits & exponent) == 0) & ((bits & mantissa) != 0)).sum())
    return count


def _state_tensors(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    return [
        value
        for state in optimizer.state.values()
        for value in state.values()
        if isinstance(value, torch.Tensor) and value.is_floating_point()
    ]


@contextmanager
def _activation_counter(model: torch.nn.Module) -> Iterator[list[int]]:
    """Counts denormal values in every module's outputs (forward hooks) and in their
    gradients (a hook on each output tensor that requires grad) while the context is open;
    yields the one-element running total. Tensor hooks, not module backward hooks: the latter
    wrap outputs in a custom autograd function, which in-place operations after them (an
    in-place ReLU after a batch norm) may not modify."""
    found = [0]

    def count_gradient(grad: torch.Tensor) -> None:
        found[0] += denormal_values([grad])

    def outputs(_module: torch.nn.Module, _inputs: Any, output: Any) -> None:
        tensors = [t for t in (output if isinstance(output, tuple) else (output,))]
        tensors = [t for t in tensors if isinstance(t, torch.Tensor)]
        found[0] += denormal_values(tensors)
        for tensor in tensors:
            if tensor.requires_grad:
                tensor.register_hook(count_gradient)

    leaves = [m for m in model.modules() if not list(m.children())]
    handles = [m.register_forward_hook(outputs) for m in leaves]
    try:
        yield found
    finally:
        for handle in handles:
            handle.remove()


def count_denormals(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None,
    step: Callable[[], None] | None = None,
    probe_flush: bool = False,
) -> DenormalCount:
    """Denormal values in `model`'s parameters and gradients and `optimizer`'s state as they
    are now; with `step` (a training step of this model: it trains one more step) also in
    every module's outputs and output gradients during that step; with `probe_flush`, the
    fraction of a parallel operation this process flushes (`denormal_flush_coverage`, CPU)."""
    parameters = list(model.parameters())
    grads = [p.grad for p in parameters if p.grad is not None]
    state = _state_tensors(optimizer) if optimizer is not None else []
    activations = None
    if step is not None:
        with _activation_counter(model) as found:
            step()
        activations = found[0]
    return DenormalCount(
        parameters=denormal_values(parameters),
        gradients=denormal_values(grads),
        optimizer_state=denormal_values(state),
        activations=activations,
        values=sum(t.numel() for t in [*parameters, *grads, *state]),
        flush_coverage=denormal_flush_coverage() if probe_flush else None,
    )


def sample_trend(
    measurement: Measurement, denormals: DenormalCount | None = None
) -> SampleTrend | None:
    """The within-round trend of a case's samples (`stats.within_round_trend`) as stored,
    with its cause named when the samples grow and the case left denormal values behind;
    None when too few samples per round."""
    trend = within_round_trend(measurement.samples_s, measurement.sample_rounds)
    if trend is None:
        return None
    cause = None
    if trend.flagged and trend.change > 0 and denormals is not None and denormals.total:
        cause = denormal_cause(denormals)
    return SampleTrend(**trend._asdict(), cause=cause)


def denormal_cause(denormals: DenormalCount) -> str:
    """One sentence naming denormal values as the cause of a growing step time."""
    where = [
        f"{count} in {name}"
        for name, count in (
            ("parameters", denormals.parameters),
            ("gradients", denormals.gradients),
            ("optimizer state", denormals.optimizer_state),
            ("activations and their gradients", denormals.activations or 0),
        )
        if count
    ]
    text = f"denormal values ({', '.join(where)}): the CPU computes on them through a slow path"
    coverage = denormals.flush_coverage
    if coverage is not None and coverage < 1.0:
        text += f"; flush-to-zero covered {coverage:.0%} of the intra-op threads' work"
    return text + f" (${DENORMALS_ENV}=flush flushes them)"
