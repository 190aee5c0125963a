"""Collectives probe: all_reduce, all_gather, reduce_scatter, broadcast and all_to_all over a
sweep of message sizes, reported as algbw and busbw with the nccl-tests conventions.

Needs a process group of at least two ranks (`bench run --nproc 2 ...`); in a single process
every case is `unsupported`. The distributed harness (harness.distributed) times each message size
with the same synchronized schedule it uses for training steps (barrier, warm-up, per-sample
max over ranks) and records one CollectivePoint per size.

Sizes follow nccl-tests: S is the all_reduce/broadcast buffer, the gathered output of
all_gather, the input of reduce_scatter and each rank's send buffer of all_to_all (S / n to
every rank, its own included; `all_to_all_single`, the exchange of expert parallelism);
algbw = S / time, busbw = algbw x factor with factor 2(n-1)/n for all_reduce, (n-1)/n for
all_gather, reduce_scatter and all_to_all, 1 for broadcast.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist

from workloads.base import (
    BuildContext,
    CaseUnsupported,
    Instance,
    Work,
    Workload,
    WorkloadError,
)
from workloads.modes import COLLECTIVE_MODES

KIB = 1024


def bus_factor(op: str, world: int) -> float:
    """nccl-tests' busbw / algbw factor of `op` on `world` ranks."""
    if op == "all_reduce":
        return 2.0 * (world - 1) / world
    if op in ("all_gather", "reduce_scatter", "all_to_all"):
        return (world - 1) / world
    if op == "broadcast":
        return 1.0
    raise ValueError(f"unknown collective '{op}'; choose from: {', '.join(COLLECTIVE_MODES)}")


def message_sizes(min_bytes: int, max_bytes: int, factor: int) -> list[int]:
    """min_bytes, min_bytes x factor, ... up to and including max_bytes (at least one size)."""
    sizes = [min_bytes]
    while sizes[-1] * factor <= max_bytes:
        sizes.append(sizes[-1] * factor)
    return sizes


def _collective(op: str) -> Callable[..., Any]:
    """The tensor-in/tensor-out torch.distributed function of `op` (newest name first)."""
    names = {
        "all_gather": ("all_gather_single", "all_gather_into_tensor"),
        "reduce_scatter": ("reduce_scatter_single", "reduce_scatter_tensor"),
    }[op]
    for name in names:
        fn = getattr(dist, name, None)
        if fn is not None:
            return fn
    raise CaseUnsupported(f"this torch has no tensor {op} ({' or '.join(names)})")


class CollectiveInstance(Instance):
    """Buffers of every message size on the device, and one timed closure per size."""

    def __init__(self, ctx: BuildContext, params: dict[str, Any]) -> None:
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
            raise CaseUnsupported(
                "the allreduce collectives probe needs --nproc >= 2 (a collective needs at "
                "least two processes); e.g. `bench run --workload allreduce --nproc 2`."
            )
        self.ctx = ctx
        self.world = dist.get_world_size()
        self.element = torch.tensor([], dtype=ctx.dtype).element_size()
        granule = self.element * self.world
        sizes = message_sizes(params["min_bytes"], params["max_bytes"], params["factor"])
        self.sizes = sorted({max(granule, size // granule * granule) for size in sizes})

    def _buffer(self, size_bytes: int) -> torch.Tensor:
        # Zeros: repeated sums stay finite in every dtype.
        return torch.zeros(size_bytes // self.element, dtype=self.ctx.dtype, device=self.ctx.device)

    def closure(self, op: str, size_bytes: int) -> Callable[[], None]:
        """One `op` on a message of S = size_bytes (see module docstring for S)."""
        full = self._buffer(size_bytes)
        if op == "all_reduce":
            return lambda: dist.all_reduce(full)
        if op == "broadcast":
            return lambda: dist.broadcast(full, src=0)
        if op == "all_to_all":
            received = self._buffer(size_bytes)
            return lambda: dist.all_to_all_single(received, full)
        part = self._buffer(size_bytes // self.world)
        fn = _collective(op)
        if op == "all_gather":
            return lambda: fn(full, part)
        return lambda: fn(part, full)

    def sweep(self, mode: str) -> list[tuple[int, Callable[[], None]]]:
        """(S in bytes, timed closure) for every message size, smallest first."""
        return [(size, self.closure(mode, size)) for size in self.sizes]

    def bus_factor(self, mode: str) -> float:
        return bus_factor(mode, self.world)

    def step(self, mode: str) -> Callable[[], None]:
        return self.closure(mode, self.sizes[-1])

    def flops(self, mode: str) -> float | None:
        return None

    def work(self, mode: str) -> Work:
        return Work(items=self.sizes[-1], unit="bytes")

    def bytes_moved(self, mode: str) -> float | None:
        return float(self.sizes[-1])


class AllReduceWorkload(Workload):
    name = "allreduce"
    description = "collectives probe: algbw/busbw per message size (needs --nproc >= 2)"
    modes = COLLECTIVE_MODES
    presets = {
        # batch is unused (one collective per step); kept because every preset has one.
        "tiny": {"batch": 1, "min_bytes": KIB, "max_bytes": 64 * KIB, "factor": 4},
        "small": {"batch": 1, "min_bytes": KIB, "max_bytes": 16 * KIB * KIB, "factor": 4},
        "base": {"batch": 1, "min_bytes": KIB, "max_bytes": KIB**3, "factor": 2},
    }

    def validate_params(self, params: dict[str, Any]) -> None:
        super().validate_params(params)
        if params["factor"] < 2:
            raise WorkloadError(f"parameter allreduce.factor must be >= 2, got {params['factor']}.")
        if params["max_bytes"] < params["min_bytes"]:
            raise WorkloadError(
                f"parameter allreduce.max_bytes ({params['max_bytes']}) must be >= min_bytes "
                f"({params['min_bytes']})."
            )

    def build(self, ctx: BuildContext) -> Instance:
        return CollectiveInstance(ctx, ctx.params)
