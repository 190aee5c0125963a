"""Matmul probe: achieved FLOP/s of `torch.mm` computed directly in the case's dtype, for a
square or given shape, or for the best shape of a short sweep (the max-achievable-matmul
method: try shapes, keep the fastest).

With sustain_s > 0 the chosen shape is also held for sustain_s seconds in equal windows
(mamf-finder's MAMF vs MSMF distinction): the first window's rate is the burst rate, the last
window's the sustained one, with the device's clock, power and temperature sampled after each
window where the backend exposes them (Backend.telemetry()). A device that throttles at its
power or thermal limit shows a ratio below 1."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, NamedTuple

import torch

from workloads.base import BuildContext, Instance, Work, Workload, WorkloadError, mode_error

SWEEP_SIZES: tuple[int, ...] = (256, 512, 768, 1024, 1536, 2048, 3072, 4096, 6144, 8192)
"""Square sizes a sweep tries (smallest first), each with rectangular neighbours."""


def sweep_shapes(largest: int) -> list[tuple[int, int, int]]:
    """(m, k, n) shapes of a sweep up to `largest`: each square size, then the same size
    with k halved and doubled (where within `largest`)."""
    shapes: list[tuple[int, int, int]] = []
    for size in (s for s in SWEEP_SIZES if s <= largest):
        shapes.append((size, size, size))
        for k in (size // 2, size * 2):
            if k <= largest:
                shapes.append((size, k, size))
    return shapes


class MatmulInstance(Instance):
    def __init__(self, ctx: BuildContext, params: dict[str, Any]) -> None:
        self.ctx = ctx
        self.p = params
        n = params["n"]
        self.shape = (params["m"] or n, params["k"] or n, n)
        self.tried: list[tuple[tuple[int, int, int], float]] = []
        if params["sweep"]:
            self.shape = self._sweep()
        self._allocate(self.shape)
        self.windows: list[Window] = []
        if params["sustain_s"] > 0:
            self.windows = self._sustain(params["sustain_s"], params["sustain_windows"])

    def _allocate(self, shape: tuple[int, int, int]) -> None:
        m, k, n = shape
        generator = torch.Generator().manual_seed(self.ctx.seed)
        dtype, device = self.ctx.dtype, self.ctx.device
        self.a = torch.randn(m, k, generator=generator).to(device=device, dtype=dtype)
        self.b = torch.randn(k, n, generator=generator).to(device=device, dtype=dtype)
        self.c = torch.empty(m, n, device=device, dtype=dtype)
        mm = self.ctx.compiled(torch.mm)

        def probe() -> None:
            mm(self.a, self.b, out=self.c)

        def probe_compiled() -> None:  # compiled graphs do not take `out=`
            self.c = mm(self.a, self.b)

        self._probe = probe_compiled if self.ctx.compile else probe

    def _sweep(self) -> tuple[int, int, int]:
        """The fastest shape (FLOP/s) among sweep_shapes(max_n) tried within the budget."""
        budget = self.p["sweep_budget_s"]
        deadline = time.perf_counter() + budget
        best: tuple[tuple[int, int, int], float] | None = None
        for shape in sweep_shapes(self.p["max_n"]):
            if time.perf_counter() > deadline:
                break
            self._allocate(shape)
            m, k, n = shape
            rate = 2.0 * m * k * n / self._best_seconds(max(budget / 20, 0.02))
            self.tried.append((shape, rate))
            if best is None or rate > best[1]:
                best = (shape, rate)
        assert best is not None  # the smallest shape is always tried
        return best[0]

    def _best_seconds(self, budget_s: float, blocks: int = 3) -> float:
        """The fastest of `blocks` timed blocks of the probe (seconds per call), each block
        about budget_s / blocks long, after one untimed call. The search needs a ranking of
        shapes, not a CI: the fastest block is the least disturbed by other work."""
        timer = self.ctx.backend.timer()
        self._probe()
        once = timer.time_block(self._probe, 1)
        iterations = max(1, int(budget_s / blocks / max(once, 1e-9)))
        return min(timer.time_block(self._probe, iterations) / iterations for _ in range(blocks))

    def _sustain(self, seconds: float, windows: int) -> list[Window]:
        """Run the probe back to back for about `seconds`, timed in `windows` equal windows;
        each window's rate, then one telemetry sample taken right after it."""
        timer = self.ctx.backend.timer()
        flops = self.flops("probe")
        window_s = seconds / windows
        self._probe()
        per_call = max(timer.time_block(self._probe, 1), 1e-9)
        found = []
        for _ in range(windows):
            iterations = max(1, round(window_s / per_call))
            elapsed = timer.time_block(self._probe, iterations)
            per_call = max(elapsed / iterations, 1e-9)
            found.append(
                Window(
                    seconds=elapsed,
                    flops=flops * iterations / max(elapsed, 1e-12),
                    telemetry=self.ctx.backend.telemetry(),
                )
            )
        return found

    def step(self, mode: str) -> Callable[[], None]:
        if mode != "probe":
            raise mode_error("matmul", mode, MatmulWorkload.modes)

        run = self._probe

        def probe() -> None:
            run()

        return probe

    def flops(self, mode: str) -> float:
        m, k, n = self.shape
        return 2.0 * m * k * n

    def work(self, mode: str) -> Work:
        return Work(items=self.flops(mode), unit="FLOP")

    def nonfinite_reason(self) -> str | None:
        return None  # random operands may overflow fp16; the probe measures time only

    def extra_metrics(self, mode: str, seconds_per_step: float) -> dict[str, float]:
        m, k, n = self.shape
        extra = {"m": float(m), "k": float(k), "n": float(n), "sweep": float(self.p["sweep"])}
        if self.tried:
            extra["shapes_tried"] = float(len(self.tried))
            extra["sweep_best_flops"] = max(rate for _, rate in self.tried)
            extra["sweep_largest_step_flops"] = max(2.0 * m * k * n for (m, k, n), _ in self.tried)
        if self.windows:
            extra.update(sustain_metrics(self.windows))
        return extra


class Window(NamedTuple):
    """One window of a sustained run: its length, its rate and the telemetry sampled after."""

    seconds: float
    flops: float
    telemetry: dict[str, float]


def sustain_metrics(windows: list[Window]) -> dict[str, float]:
    """burst_flops (first window), sustained_flops (last window), sustain_ratio (sustained /
    burst), the slowest window, the time held, and each telemetry value of the first and the
    last window (burst_clock_mhz, sustained_power_w, ...)."""
    first, last = windows[0], windows[-1]
    metrics = {
        "sustain_s": sum(w.seconds for w in windows),
        "sustain_windows": float(len(windows)),
        "burst_flops": first.flops,
        "sustained_flops": last.flops,
        "sustain_ratio": last.flops / first.flops,
        "sustain_min_flops": min(w.flops for w in windows),
    }
    for name, value in first.telemetry.items():
        metrics[f"burst_{name}"] = value
    for name, value in last.telemetry.items():
        metrics[f"sustained_{name}"] = value
    return metrics


class MatmulWorkload(Workload):
    name = "matmul"
    description = "torch.mm probe in the case dtype (FLOP/s); sweep=true searches shapes"
    modes = ("probe",)
    presets = {
        "tiny": {
            "batch": 1,
            "n": 128,
            "m": 0,
            "k": 0,
            "sweep": False,
            "max_n": 512,
            "sweep_budget_s": 1.0,
            "sustain_s": 0.0,
            "sustain_windows": 5,
        },
        "small": {
            "batch": 1,
            "n": 1024,
            "m": 0,
            "k": 0,
            "sweep": False,
            "max_n": 2048,
            "sweep_budget_s": 5.0,
            "sustain_s": 0.0,
            "sustain_windows": 10,
        },
        "base": {
            "batch": 1,
            "n": 8192,
            "m": 0,
            "k": 0,
            "sweep": True,
            "max_n": 16384,
            "sweep_budget_s": 60.0,
            "sustain_s": 0.0,
            "sustain_windows": 10,
        },
    }

    def validate_params(self, params: dict[str, Any]) -> None:
        """m and k may be 0 (= n), sustain_s 0 (= no sustained run); everything else must be
        positive."""
        for key in ("m", "k"):
            if params[key] < 0:
                raise WorkloadError(f"matmul: {key} must be >= 0 (0 means n), got {params[key]}.")
        if params["sustain_s"] < 0:
            raise WorkloadError(
                f"matmul: sustain_s must be >= 0 seconds (0 means no sustained run), "
                f"got {params['sustain_s']}."
            )
        zero_ok = ("m", "k", "sustain_s")
        super().validate_params({k: v for k, v in params.items() if k not in zero_ok})
        if params["sweep"] and (params["m"] or params["k"]):
            raise WorkloadError("matmul: give either sweep=true or a shape (m, k), not both.")

    def build(self, ctx: BuildContext) -> Instance:
        return MatmulInstance(ctx, ctx.params)
