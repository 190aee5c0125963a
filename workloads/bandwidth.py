"""Memory bandwidth probe (STREAM-style copy and triad) on arrays far larger than the last
level cache; work unit bytes, achieved bytes/s."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from workloads.base import BuildContext, Instance, Work, Workload, mode_error

MIB = 2**20
TRIAD_SCALAR = 3.0


class BandwidthInstance(Instance):
    def __init__(self, ctx: BuildContext, params: dict[str, Any]) -> None:
        self.ctx = ctx
        element = torch.empty((), dtype=ctx.dtype).element_size()
        self.count = params["size_mib"] * MIB // element
        self.array_bytes = float(self.count * element)
        make = lambda value: torch.full(  # noqa: E731
            (self.count,), value, device=ctx.device, dtype=ctx.dtype
        )
        self.a, self.b, self.c = make(1.0), make(2.0), make(0.5)

    def step(self, mode: str) -> Callable[[], None]:
        a, b, c = self.a, self.b, self.c
        if mode == "copy":

            def copy() -> None:
                a.copy_(b)

            return copy
        if mode == "triad":

            def triad() -> None:
                torch.add(b, c, alpha=TRIAD_SCALAR, out=a)

            return triad
        raise mode_error("bandwidth", mode, BandwidthWorkload.modes)

    def bytes_moved(self, mode: str) -> float:
        """Copy reads one array and writes one (2x); triad reads two and writes one (3x)."""
        return (2.0 if mode == "copy" else 3.0) * self.array_bytes

    def flops(self, mode: str) -> float | None:
        return 2.0 * self.count if mode == "triad" else None

    def work(self, mode: str) -> Work:
        return Work(items=self.bytes_moved(mode), unit="bytes")


class BandwidthWorkload(Workload):
    name = "bandwidth"
    description = "STREAM copy / triad on arrays far beyond the last-level cache (bytes/s)"
    modes = ("copy", "triad")
    presets = {
        "tiny": {"batch": 1, "size_mib": 16},
        "small": {"batch": 1, "size_mib": 128},
        "base": {"batch": 1, "size_mib": 1024},
    }

    def build(self, ctx: BuildContext) -> Instance:
        return BandwidthInstance(ctx, ctx.params)
