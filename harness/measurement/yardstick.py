"""Yardsticks: fixed kernels, timed right before every round of every case, so that a
comparison of two runs can tell a slower machine from slower code.

A shared host changes speed under a benchmark. The 2-core cloud VM this project is built on
flips, every few seconds, between two states: mlp tiny infer reads 58 us in one and 95 us in
the other (1.6x), with nothing else of ours running; a CI run failed its same-code gate on
exactly that (60 us, then 95 us six seconds later, infer and train alike). Nothing in a
case's own samples can tell that from a regression. A yardstick is work that never changes,
read in the same process, threads and device as the case a few milliseconds before the
case's round: when the machine slows, it slows too, and `harness.analysis.compare` judges
each case relative to it as well as on its own.

The states do not slow all work alike. Measured over 90 s of one-thread windows (665 windows,
92 in the slow state), the slow state read, against the fast one: mlp tiny infer 1.54x, mlp
tiny train 1.50x, and for the three yardsticks:
- `dispatch`, thirty elementwise operators on a 16x64 tensor (~0.1-0.2 ms on a CPU core),
  the overhead-bound end that small presets live at: 1.43x;
- `train`, forward, backward and AdamW step (lr 0, so the weights never change) of a 64-wide
  two-layer MLP on 16 rows: autograd and optimizer overhead: 1.54x;
- `compute`, eight 64x256 @ 256x256 products with a ReLU and a streaming update of a 4 MiB
  vector (~1 ms): cache-resident compute and memory traffic: 1.10x.
A case is judged against each, since which profile it has is not known. The three readings
take ~40 ms per round.

They run on one intra-op thread: they measure the speed of a core of the machine (its state),
not how many cores the process has. How many it has is configuration, named by compare among
the differences and judged as a change: under `taskset -c 0` (torch then takes one thread)
the default-thread `compute` yardstick read 1.36x slower, and would have excused most of the
matmul probe's 2x, while at one thread it read 1.06x.
All are fp32, fixed in size, and built once per process. On an accelerator the `train` and
`compute` kernels would read launch latency only; `DEVICE_YARDSTICKS` replace them there.
"""

from __future__ import annotations

import functools
import statistics
from collections.abc import Callable

import torch

from backends.base import Backend
from harness.measurement.fallbacks import uncaptured
from harness.measurement.timing import run_schedule, timer_overhead_s

YARDSTICK_BUDGET_S = 0.01
"""Sampling time of one reading of one yardstick (samples of at least 1 ms)."""

YARDSTICKS: tuple[str, ...] = ("dispatch", "train", "compute")
"""The yardsticks of the CPU (and CPU-hosted plugin devices)."""
DEVICE_YARDSTICKS: tuple[str, ...] = ("dispatch", "gemm", "copy")
"""The yardsticks of an accelerator. The CPU's `train` and `compute` are microsecond kernels
there (64x256 GEMMs, a 4 MiB stream inside a 50 MB L2): they would read launch latency, never
the device's clock, thermal or power state. `gemm` (an 8192 bf16 matmul, ~1 ms on an H100)
follows the compute clock and power limit; `copy` (256 MiB, larger than any current L2: 50 MB
on H100, 192 MB on Ascend 910B) follows memory bandwidth; `dispatch` stays to follow launch
cost, which moves with drivers."""
GEMM_YARDSTICK = 8192
COPY_YARDSTICK_BYTES = 256 * 2**20


def yardstick_names(device_type: str) -> tuple[str, ...]:
    """The yardsticks read on a device of `device_type`."""
    return YARDSTICKS if device_type == "cpu" else DEVICE_YARDSTICKS


@functools.cache
def _kernel(name: str, device: str) -> Callable[[], None]:
    """The step of yardstick `name` on `device` (cached per process and device)."""
    generator = torch.Generator().manual_seed(0)
    if name == "dispatch":
        small = torch.randn(16, 64, generator=generator).to(device)

        def dispatch() -> None:
            with torch.inference_mode():
                y = small
                for _ in range(10):
                    y = torch.nn.functional.gelu(y + 1.0) * 0.5

        return dispatch
    if name == "train":
        model = torch.nn.Sequential(
            torch.nn.Linear(64, 64), torch.nn.GELU(), torch.nn.Linear(64, 64)
        ).to(device)
        optimizer = torch.optim.AdamW(model.parameters(), lr=0.0, foreach=True)
        batch = torch.randn(16, 64, generator=generator).to(device)

        def train() -> None:
            model(batch).square().mean().backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        return train
    if name == "gemm":
        a = torch.randn(GEMM_YARDSTICK, GEMM_YARDSTICK, generator=generator)
        a = a.to(device=device, dtype=torch.bfloat16)
        out = torch.empty_like(a)

        def gemm() -> None:
            torch.matmul(a, a, out=out)

        return gemm
    if name == "copy":
        source = torch.ones(COPY_YARDSTICK_BYTES // 4, device=device)
        target = torch.empty_like(source)

        def copy() -> None:
            target.copy_(source)

        return copy
    x = torch.randn(64, 256, generator=generator).to(device)
    weight = (torch.randn(256, 256, generator=generator) / 16.0).to(device)
    stream = torch.randn(1 << 20, generator=generator).to(device)

    def compute() -> None:
        with torch.inference_mode():
            y = x
            for _ in range(8):
                y = torch.relu(y @ weight)
            stream.mul_(0.5).add_(y[0, 0])

    return compute


def read_yardstick(backend: Backend, name: str, budget_s: float = YARDSTICK_BUDGET_S) -> float:
    """Seconds per call of yardstick `name` on `backend`'s device now: the median sample of
    `run_schedule` (the loop behind every measurement) given `budget_s` of sampling (at
    least 3 samples) after a quarter of it of warm-up. Always positive."""
    step = _kernel(name, str(backend.device()))
    timer = backend.timer()
    schedule = run_schedule(
        lambda calls: timer.time_block(step, calls),
        lambda: timer_overhead_s(timer),
        time_cold_start=False,
        warmup_s=budget_s / 4,
        warmup_iterations=1,
        min_samples=3,
        max_samples=1000,
        max_time_s=budget_s,
        precision=0.0,
        min_sample_s=1e-3,
    )
    return statistics.median(schedule.samples_s)


_UNREADABLE: set[tuple[str, str]] = set()
"""(yardstick, device) pairs that raised in this process: left out from then on."""


def read_yardsticks(backend: Backend) -> dict[str, float]:
    """One reading of every yardstick of the device type (`yardstick_names`), by name, on one
    intra-op thread (the process's thread count is restored after). A yardstick the device
    cannot run (a vendor device lacking one of its operators) is left out, in this reading and
    every later one of this process: a yardstick never fails a case, and its series never has
    gaps. Host fallbacks inside the yardsticks are not charged to the case read around them."""
    device = str(backend.device())
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    readings: dict[str, float] = {}
    try:
        with uncaptured():
            for name in yardstick_names(backend.device_type):
                if (name, device) in _UNREADABLE:
                    continue
                try:
                    readings[name] = read_yardstick(backend, name)
                except Exception:
                    _UNREADABLE.add((name, device))
    finally:
        torch.set_num_threads(threads)
    return readings


def append_readings(
    earlier: dict[str, list[float]] | None, readings: dict[str, float]
) -> dict[str, list[float]]:
    """The per-round series of `earlier` with this round's `readings` appended. A series that
    missed a round (no reading now, or none in an earlier round) is dropped, so every series
    kept has one reading per round, in round order."""
    earlier = earlier or {}
    done = max((len(values) for values in earlier.values()), default=0)
    return {
        name: [*earlier.get(name, []), value]
        for name, value in readings.items()
        if len(earlier.get(name, [])) == done
    }
