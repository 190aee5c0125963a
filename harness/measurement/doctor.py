"""`bench doctor`: benchmarking hazards on this machine, and the harness validated against
torch.utils.benchmark in the same process."""

from __future__ import annotations

import os
import statistics
import time
from typing import Literal

from pydantic import BaseModel

from backends.base import Backend
from harness.measurement.environment import capture_environment
from harness.measurement.timing import measure, timer_overhead_s

Verdict = Literal["pass", "warn", "fail", "info"]

TARGET_RATIO_TOLERANCE = 0.03
TARGET_LOOP_OVERHEAD_S = 1e-6


class Check(BaseModel):
    """One doctor finding: what was looked at, the figure, and a verdict with advice."""

    name: str
    value: str
    verdict: Verdict
    detail: str = ""


def hazards() -> list[Check]:
    """Machine conditions that make timings noisy or unrepresentative."""
    env = capture_environment()
    cores = env.affinity_cores or env.logical_cores
    checks: list[Check] = []
    if env.load_average is not None:
        load = env.load_average[0]
        busy = load > 0.5 * cores
        checks.append(
            Check(
                name="load average (1 min)",
                value=f"{load:.2f} on {cores} cores",
                verdict="warn" if busy else "pass",
                detail="other work is running: stop it or expect noisy numbers" if busy else "",
            )
        )
    too_many = env.torch_threads > cores
    checks.append(
        Check(
            name="torch threads vs usable cores",
            value=f"{env.torch_threads} threads, {cores} cores",
            verdict="warn" if too_many else "pass",
            detail="oversubscribed: set OMP_NUM_THREADS to the core count" if too_many else "",
        )
    )
    governor = env.cpu_governor
    checks.append(
        Check(
            name="CPU frequency governor",
            value=governor or "not readable (VM or container)",
            verdict="warn" if governor not in (None, "performance") else "info",
            detail="set the 'performance' governor for stable clocks"
            if governor not in (None, "performance")
            else "",
        )
    )
    if env.cpu_turbo is not None:
        checks.append(
            Check(
                name="turbo boost",
                value=env.cpu_turbo,
                verdict="info",
                detail="turbo makes clocks depend on temperature and load"
                if env.cpu_turbo == "on"
                else "",
            )
        )
    if env.env_vars:
        checks.append(
            Check(
                name="performance environment variables",
                value=", ".join(f"{k}={v}" for k, v in env.env_vars.items()),
                verdict="info",
            )
        )
    return checks


def timer_checks(backend: Backend) -> list[Check]:
    """Resolution of the host clock and overhead of the backend's timer."""
    info = time.get_clock_info("perf_counter")
    deltas = []
    for _ in range(2000):
        a = time.perf_counter()
        b = time.perf_counter()
        while b == a:
            b = time.perf_counter()
        deltas.append(b - a)
    overhead = timer_overhead_s(backend.timer())
    floor_ms = max(1e-3, overhead * 1e4) * 1e3
    return [
        Check(
            name="host clock resolution",
            value=f"{min(deltas) * 1e9:.0f} ns measured ({info.resolution * 1e9:.0f} ns declared)",
            verdict="pass" if min(deltas) < 1e-6 else "warn",
        ),
        Check(
            name=f"{backend.name} timer overhead per block",
            value=f"{overhead * 1e6:.2f} us -> samples of >= {floor_ms:.1f} ms",
            verdict="info",
        ),
    ]


def loop_overhead(backend: Backend) -> Check:
    """The harness's reading for an empty function: its cost per iteration."""
    m = measure(lambda: None, backend, max_time_s=0.5)
    ok = m.median <= TARGET_LOOP_OVERHEAD_S
    return Check(
        name="measure-loop overhead (empty function)",
        value=f"{m.median * 1e9:.0f} ns per iteration",
        verdict="pass" if ok else "fail",
        detail=f"target <= {TARGET_LOOP_OVERHEAD_S * 1e6:.0f} us",
    )


def agreement_with_torch_benchmark(size: int = 512, rounds: int = 3) -> Check:
    """Harness median vs torch.utils.benchmark blocked_autorange on the same fp32 matmul,
    interleaved in one process; the ratio of the medians of the per-round medians."""
    import torch
    from torch.utils.benchmark import Timer

    a = torch.randn(size, size)
    b = torch.randn(size, size)
    timer = Timer(
        "torch.mm(a, b)",
        globals={"torch": torch, "a": a, "b": b},
        num_threads=torch.get_num_threads(),
    )
    ours, theirs = [], []
    for _ in range(rounds):
        ours.append(measure(lambda: torch.mm(a, b), max_time_s=0.5).median)
        theirs.append(timer.blocked_autorange(min_run_time=0.5).median)
    ratio = statistics.median(ours) / statistics.median(theirs)
    ok = abs(ratio - 1.0) <= TARGET_RATIO_TOLERANCE
    return Check(
        name=f"harness / torch.utils.benchmark ({size}x{size} fp32 matmul)",
        value=f"{ratio:.3f} ({statistics.median(ours) * 1e6:.1f} us vs "
        f"{statistics.median(theirs) * 1e6:.1f} us)",
        verdict="pass" if ok else "warn",
        detail=f"target 1.00 +- {TARGET_RATIO_TOLERANCE:.2f}"
        + ("" if ok else "; rerun on a quiet machine"),
    )


def run_doctor(backend: Backend) -> list[Check]:
    """Every doctor check, hazards first."""
    return [
        *hazards(),
        *timer_checks(backend),
        loop_overhead(backend),
        agreement_with_torch_benchmark(),
        Check(name="process", value=f"pid {os.getpid()}", verdict="info"),
    ]
