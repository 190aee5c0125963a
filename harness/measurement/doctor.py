"""`bench doctor`: benchmarking hazards on this machine, and the harness validated against
torch.utils.benchmark in the same process."""

from __future__ import annotations

import math
import os
import statistics
import time
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, Field

from backends.base import Backend
from harness.measurement.environment import capture_environment
from harness.measurement.timing import measure, timer_overhead_s
from harness.measurement.yardstick import append_readings, read_yardsticks
from harness.results.presets import PRESETS
from harness.stats import DEFAULT_THRESHOLD

Verdict = Literal["pass", "warn", "fail", "info"]

TARGET_RATIO_TOLERANCE = 0.03
TARGET_LOOP_OVERHEAD_S = 1e-6
DRIFT_S = 20.0
"""Default seconds `bench doctor` watches a fixed kernel for drift."""
DRIFT_WINDOW_S = 0.5
DRIFT_MATMUL = 256
RESOLVE_WARN = DEFAULT_THRESHOLD
"""A smallest resolvable change above the default compare threshold warns."""
STEAL_WARN = 0.05
_PROC_STAT = Path("/proc/stat")


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


def cpu_times() -> tuple[int, int] | None:
    """(steal, total) jiffies of all CPUs from /proc/stat, or None where it is not there or
    has no steal column (kernels before 2.6.11, other systems)."""
    try:
        fields = _PROC_STAT.read_text().splitlines()[0].split()
    except (OSError, IndexError):
        return None
    if not fields or fields[0] != "cpu" or len(fields) < 9:
        return None
    values = [int(v) for v in fields[1:]]
    # user nice system idle iowait irq softirq steal [guest guest_nice: already in user/nice]
    return values[7], sum(values[:8])


class Drift(BaseModel):
    """Window medians of a fixed kernel over time, and what they mean for comparisons."""

    window_medians_s: list[float]
    window_s: float
    size: int
    """The matmul's side."""
    spread: float
    """max / min of the window medians."""
    cv: float
    """Coefficient of variation of the window medians (sd of their logs)."""
    steal: float | None
    """Fraction of CPU time stolen by the hypervisor during the windows (None: unknown)."""
    resolvable: float
    """Smallest relative change a comparison of two runs of `rounds` rounds resolves here, for
    work that drifts like the most drifting of the matmul and the yardsticks."""
    rounds: int
    yardsticks: dict[str, list[float]] = Field(default_factory=dict)
    """Each yardstick's reading (harness.measurement.yardstick) after every window: the
    matmul is compute-bound, and a shared host's slow states cost dispatch-bound work far more
    (1.0x against 1.5x)."""
    most_drifting: str = "matmul"
    """The kernel whose drift sets `resolvable`: `matmul` or a yardstick's name."""

    def kernel_drift(self) -> dict[str, tuple[float, float]]:
        """`series_drift` of the matmul's window medians and of each yardstick's readings, by
        kernel name (`matmul` first)."""
        return series_drift({"matmul": self.window_medians_s, **self.yardsticks})


def series_drift(series: dict[str, list[float]]) -> dict[str, tuple[float, float]]:
    """(max/min, CV) of each series of timings (>= 2 positive values), by name; the CV is the
    sample standard deviation of the logs."""
    return {
        name: (max(values) / min(values), float(np.std(np.log(values), ddof=1)))
        for name, values in series.items()
    }


def resolvable_change(cv: float, rounds: int, confidence: float = 0.95) -> float:
    """The noise floor `bench compare` would find between two runs of `rounds` rounds each on
    a machine whose round medians scatter with log-sd `cv`: exp(t * cv * sqrt(2 / rounds)) - 1,
    t the Student quantile at 2 (rounds - 1) degrees of freedom."""
    from scipy import stats as sps

    quantile = float(sps.t.ppf(0.5 + confidence / 2.0, max(2 * (rounds - 1), 1)))
    return math.expm1(quantile * cv * math.sqrt(2.0 / rounds))


def measure_drift(
    backend: Backend,
    seconds: float = DRIFT_S,
    window_s: float = DRIFT_WINDOW_S,
    size: int = DRIFT_MATMUL,
    rounds: int = PRESETS["small"].rounds,
) -> Drift:
    """Time a `size`x`size` fp32 matmul on `backend` (torch threads as configured) in
    consecutive windows of `window_s` for about `seconds` (at least 2 windows), with one block
    size for all, and read the yardsticks after each window; report the spread of the window
    medians and readings, CPU steal over the windows and the smallest change two runs of
    `rounds` rounds could resolve for the most drifting kernel (each window standing for one
    round)."""
    import torch

    device = backend.device()
    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)

    def step() -> object:
        return torch.mm(a, b)

    first = measure(step, backend, max_time_s=window_s / 2, min_samples=3)
    windows = max(2, round(seconds / window_s))
    before = cpu_times()
    medians: list[float] = []
    readings: dict[str, list[float]] | None = None
    for _ in range(windows):
        medians.append(
            measure(
                step,
                backend,
                warmup_s=0.0,
                warmup_iterations=1,
                min_samples=3,
                max_time_s=window_s,
                precision=1e-9,  # sample the whole window
                iterations=first.iterations_per_sample,
                time_cold_start=False,
            ).median
        )
        readings = append_readings(readings, read_yardsticks(backend))
    after = cpu_times()
    steal = None
    if before is not None and after is not None and after[1] > before[1]:
        steal = (after[0] - before[0]) / (after[1] - before[1])
    drifts = series_drift({"matmul": medians, **(readings or {})})
    worst = max(drifts, key=lambda name: drifts[name][1])
    spread, cv = drifts["matmul"]
    return Drift(
        window_medians_s=medians,
        window_s=window_s,
        size=size,
        spread=spread,
        cv=cv,
        steal=steal,
        resolvable=resolvable_change(drifts[worst][1], rounds),
        rounds=rounds,
        yardsticks=readings or {},
        most_drifting=worst,
    )


def drift_checks(drift: Drift) -> list[Check]:
    """The doctor's findings from `measure_drift`."""
    windows = len(drift.window_medians_s)
    checks = [
        Check(
            name=f"drift ({drift.size}x{drift.size} matmul, {windows} windows of "
            f"{drift.window_s:g} s)",
            value=f"max/min {drift.spread:.3f}, CV {drift.cv:.1%}",
            verdict="warn" if drift.spread > 1.0 + RESOLVE_WARN else "pass",
            detail="the machine's speed changes over seconds: compare runs with rounds"
            if drift.spread > 1.0 + RESOLVE_WARN
            else "",
        ),
    ]
    for name, (spread, cv) in drift.kernel_drift().items():
        if name == "matmul":
            continue
        checks.append(
            Check(
                name=f"drift ({name} yardstick, read after each window)",
                value=f"max/min {spread:.3f}, CV {cv:.1%}",
                verdict="warn" if spread > 1.0 + RESOLVE_WARN else "pass",
                detail="the machine's speed changes over seconds for this kind of work; "
                "bench compare judges changes against it"
                if spread > 1.0 + RESOLVE_WARN
                else "",
            )
        )
    checks += [
        Check(
            name=f"smallest resolvable change ({drift.rounds} rounds per run, "
            f"{drift.most_drifting})",
            value=f"{drift.resolvable:.1%}",
            verdict="warn" if drift.resolvable > RESOLVE_WARN else "pass",
            detail="bench compare calls smaller changes noisy here; use more --rounds or a "
            "quieter machine"
            if drift.resolvable > RESOLVE_WARN
            else "",
        ),
    ]
    if drift.steal is not None:
        stolen = drift.steal > STEAL_WARN
        checks.append(
            Check(
                name="CPU steal time (during the drift windows)",
                value=f"{drift.steal:.1%} of CPU time",
                verdict="warn" if stolen else "pass",
                detail="the hypervisor takes CPU from this VM: timings drift" if stolen else "",
            )
        )
    return checks


def run_doctor(backend: Backend, drift_s: float = DRIFT_S) -> list[Check]:
    """Every doctor check, hazards first; the drift checks watch a kernel for `drift_s`
    seconds (none when 0)."""
    drift = drift_checks(measure_drift(backend, seconds=drift_s)) if drift_s > 0 else []
    return [
        *hazards(),
        *timer_checks(backend),
        loop_overhead(backend),
        agreement_with_torch_benchmark(),
        *drift,
        Check(name="process", value=f"pid {os.getpid()}", verdict="info"),
    ]
