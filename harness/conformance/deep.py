"""`bench check-backend NAME --deep`: the device acceptance run a user makes first on a new
machine. One pass/fail table with the figure behind each line: the harness's timing against
one event pair over the same loop, the measure loop's overhead, device-bound yardsticks, the
MFU of a large GEMM against the sourced peak, the profiler ranking device time, a plausible
energy reading, the settings recorded, a small suite in fp32/bf16/fp16 and a base-preset gpt
run, and the moe base memory refusal.

Lines that need an accelerator are skipped on a CPU backend ("skipped: no device"); on the
CPU the suite line runs the tiny preset of one workload, so the whole table takes seconds.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from harness.conformance.checks import KitContext
from harness.conformance.kit import Check, run_check, start_backend
from harness.conformance.outcome import CheckFailed, CheckResult, CheckSkipped, KitReport
from harness.measurement.doctor import TARGET_LOOP_OVERHEAD_S
from harness.measurement.profile import profile_step
from harness.measurement.timing import measure
from harness.measurement.yardstick import read_yardsticks
from harness.results.store import load_runs
from workloads.moe import MoEWorkload, memory_refusal

NO_DEVICE = "skipped: no device"
TIMING_AGREEMENT = 0.03
"""The harness's reading and one raw event pair over the same loop agree within 3%."""
GEMM_SIZE = 8192
MFU_RANGE = (0.5, 1.0)
DEVICE_BOUND_S = 50e-6
"""A yardstick call this long or longer is not launch latency (a launch costs ~5 us)."""
ENERGY_WINDOW_S = 3.0
SUITE_TIMEOUT_S = 300.0
DEEP_TIMEOUT_S = 600.0
"""Seconds one line may take (the suite lines run whole `bench run`s)."""


@dataclass(frozen=True)
class DeepCheck:
    """One line of the acceptance table."""

    name: str
    run: Callable[[KitContext], str]
    required: bool = True


def _device_only(ctx: KitContext) -> None:
    if ctx.backend.device_type == "cpu":
        raise CheckSkipped(NO_DEVICE)


def _gemm(ctx: KitContext, size: int = GEMM_SIZE) -> Callable[[], None]:
    a = torch.randn(size, size, device=ctx.device, dtype=torch.bfloat16)
    b = torch.randn(size, size, device=ctx.device, dtype=torch.bfloat16)
    out = torch.empty(size, size, device=ctx.device, dtype=torch.bfloat16)

    def gemm() -> None:
        torch.matmul(a, b, out=out)

    return gemm


def _tiny(ctx: KitContext) -> Callable[[], None]:
    x = torch.zeros(1, device=ctx.device)

    def tiny() -> None:
        x.add_(1.0)

    return tiny


def _event_pair_s(ctx: KitContext, fn: Callable[[], None], calls: int) -> float:
    """Seconds per call of `fn` over `calls` calls between one raw pair of torch events."""
    start = torch.Event(device=ctx.device, enable_timing=True)
    end = torch.Event(device=ctx.device, enable_timing=True)
    ctx.backend.synchronize()
    start.record()
    for _ in range(calls):
        fn()
    end.record()
    ctx.backend.synchronize()
    return start.elapsed_time(end) / 1e3 / calls


def check_timing(ctx: KitContext, kernel: str) -> str:
    """The harness's median (measure) against the median of five raw event pairs over loops of
    the same block size: within TIMING_AGREEMENT."""
    _device_only(ctx)
    fn = _tiny(ctx) if kernel == "tiny" else _gemm(ctx)
    harness = measure(fn, ctx.backend, max_time_s=1.0)
    calls = harness.iterations_per_sample
    raw = statistics.median(_event_pair_s(ctx, fn, calls) for _ in range(5))
    off = abs(harness.median - raw) / raw
    figure = (
        f"harness {harness.median * 1e6:.2f} us, one event pair {raw * 1e6:.2f} us per call "
        f"({calls} calls per block): {off:.1%} apart (limit {TIMING_AGREEMENT:.0%})"
    )
    if off > TIMING_AGREEMENT:
        raise CheckFailed(figure)
    return figure


def check_loop_overhead(ctx: KitContext) -> str:
    """measure() of an empty function: its cost per iteration, against doctor's target."""
    m = measure(lambda: None, ctx.backend, max_time_s=0.5)
    figure = (
        f"{m.median * 1e9:.0f} ns per iteration (target <= {TARGET_LOOP_OVERHEAD_S * 1e9:.0f} ns)"
    )
    if m.median > TARGET_LOOP_OVERHEAD_S:
        raise CheckFailed(figure)
    return figure


def check_yardsticks(ctx: KitContext) -> str:
    """Every yardstick call lasts DEVICE_BOUND_S or more: it reads the device, not launch cost."""
    _device_only(ctx)
    readings = read_yardsticks(ctx.backend)
    figure = ", ".join(f"{name} {s * 1e6:.0f} us" for name, s in readings.items())
    if not readings:
        raise CheckFailed("no yardstick could be read on this device")
    short = [name for name, s in readings.items() if s < DEVICE_BOUND_S]
    if short:
        raise CheckFailed(f"{figure}: {', '.join(short)} below {DEVICE_BOUND_S * 1e6:.0f} us")
    return figure


def check_gemm_mfu(ctx: KitContext) -> str:
    """An 8192 bf16 GEMM reaches between 50% and 100% of the device's sourced bf16 peak."""
    _device_only(ctx)
    info = ctx.backend.describe()
    peak = info.peak_flops.get("bf16")
    if not peak:
        raise CheckFailed(f"no sourced bf16 peak for '{info.name}' (backends/peaks.py)")
    m = measure(_gemm(ctx), ctx.backend, max_time_s=2.0)
    achieved = 2 * GEMM_SIZE**3 / m.median
    mfu = achieved / peak
    figure = (
        f"{achieved / 1e12:.0f} TFLOP/s of {peak / 1e12:.0f} ({mfu:.0%}; "
        f"{info.peak_sources.get('bf16', info.peak_source)[:60]}...)"
    )
    if not MFU_RANGE[0] <= mfu <= MFU_RANGE[1]:
        raise CheckFailed(f"{figure}: outside {MFU_RANGE[0]:.0%}-{MFU_RANGE[1]:.0%}")
    return figure


def check_profiler(ctx: KitContext) -> str:
    """The profile of a GEMM ranks device time, and the GEMM leads it."""
    _device_only(ctx)
    profile = profile_step(_gemm(ctx, 4096), ctx.backend, iterations=3)
    top = profile.ops[0].name if profile.ops else "nothing"
    figure = f"ranks {profile.time_kind} time over {', '.join(profile.activities)}; top: {top}"
    if profile.time_kind != "device":
        raise CheckFailed(f"{figure} ({profile.note})" if profile.note else figure)
    return figure


def check_energy(ctx: KitContext) -> str:
    """Average power over a busy GEMM window lies between the idle power (a window of sleep)
    and the power limit the device reports (where it reports one)."""
    _device_only(ctx)
    meter = ctx.backend.energy_meter()
    meter.start()
    time.sleep(1.0)
    idle = meter.stop()
    if idle.joules is None:
        raise CheckFailed(f"no energy reading: {idle.reason}")
    gemm = _gemm(ctx)
    meter.start()
    end = time.perf_counter() + ENERGY_WINDOW_S
    while time.perf_counter() < end:
        for _ in range(10):
            gemm()
        ctx.backend.synchronize()
    busy = meter.stop()
    if busy.joules is None:
        raise CheckFailed(f"no energy reading: {busy.reason}")
    idle_w, busy_w = idle.joules / idle.seconds, busy.joules / busy.seconds
    limit = _power_limit_w(ctx)
    figure = (
        f"idle {idle_w:.0f} W, busy {busy_w:.0f} W, limit {limit or 'unknown'} W ({busy.method})"
    )
    if not idle_w < busy_w or (limit is not None and busy_w > 1.1 * limit):
        raise CheckFailed(figure)
    return figure


def _power_limit_w(ctx: KitContext) -> float | None:
    for key in ("nvml.power_limit_w", "npu.power_limit_w"):
        value = ctx.backend.settings().get(key)
        if value:
            try:
                return float(value)
            except ValueError:
                continue
    return None


def check_settings(ctx: KitContext) -> str:
    """The backend records the settings that change numerics or speed."""
    settings = ctx.backend.settings()
    if not settings:
        raise CheckFailed("settings() is empty: nothing that changes numerics is recorded")
    shown = ", ".join(f"{k}={v}" for k, v in list(settings.items())[:4])
    return f"{len(settings)} recorded ({shown}, ...)"


def _bench_run(ctx: KitContext, *args: str) -> str:
    """`bench run --backend NAME *args` in a subprocess; the figure of its cases, or
    CheckFailed naming the cases that failed."""
    with tempfile.TemporaryDirectory(prefix="accelbench-deep-") as out:
        command = [sys.executable, "-m", "harness", "run", "--backend", ctx.name, *args]
        started = time.perf_counter()
        done = subprocess.run(
            [*command, "--out", out],
            capture_output=True,
            text=True,
            timeout=SUITE_TIMEOUT_S,
            env={**os.environ, "PYTHONPATH": _pythonpath()},
            check=False,
        )
        seconds = time.perf_counter() - started
        runs = load_runs([Path(out)])[0] if any(Path(out).glob("*.json")) else []
        cases = [case for run in runs for case in run.cases]
        ok = sum(case.status == "ok" for case in cases)
        unsupported = sum(case.status == "unsupported" for case in cases)
        failed = [
            f"{case.key.workload}/{case.key.mode}/{case.key.dtype}"
            for case in cases
            if case.status == "failed"
        ]
    figure = f"{ok} ok, {unsupported} unsupported, {len(failed)} failed in {seconds:.0f} s"
    if failed or not cases or done.returncode not in (0, 1):
        tail = done.stderr.strip().splitlines()[-1:] if not cases else []
        raise CheckFailed(f"{figure}: {', '.join(failed[:5])}{' '.join(tail)}")
    return figure


def _pythonpath() -> str:
    root = str(Path(__file__).resolve().parents[2])
    rest = os.environ.get("PYTHONPATH", "")
    return os.pathsep.join([root, rest]) if rest else root


def check_small_suite(ctx: KitContext) -> str:
    """A small-preset suite in fp32, bf16 and fp16 completes (on the CPU: mlp, tiny preset)."""
    if ctx.backend.device_type == "cpu":
        scope = ["--workload", "mlp", "--preset", "tiny", "--mode", "infer", "--rounds", "1"]
    else:
        scope = ["--workload", "mlp,convnet,gpt,llama", "--preset", "small"]
    return _bench_run(ctx, *scope, "--dtype", "fp32,bf16,fp16", "--no-fidelity")


def check_base_gpt(ctx: KitContext) -> str:
    """A base-preset gpt run (train and infer, bf16) completes."""
    _device_only(ctx)
    return _bench_run(
        ctx, "--workload", "gpt", "--preset", "base", "--dtype", "bf16", "--no-fidelity"
    )


def check_moe_refusal(ctx: KitContext) -> str:
    """moe base training on one device of this memory is either within it or refused before
    allocating with a reason naming --nproc (never an out-of-memory midway)."""
    memory = ctx.backend.describe().memory_bytes
    base = MoEWorkload.presets["base"]
    reason = memory_refusal(base, "train", memory, 1)
    if reason is None:
        return f"moe base train fits {memory or 0:,} bytes: no refusal needed"
    if "needs at least" not in reason:
        raise CheckFailed(reason)
    return reason


def plan_deep_checks() -> list[DeepCheck]:
    """The acceptance lines, in order."""
    return [
        DeepCheck("timing vs one event pair: tiny kernel", lambda c: check_timing(c, "tiny")),
        DeepCheck("timing vs one event pair: 8192 bf16 GEMM", lambda c: check_timing(c, "gemm")),
        DeepCheck("measure-loop overhead", check_loop_overhead, required=False),
        DeepCheck("yardsticks are device-bound", check_yardsticks),
        DeepCheck("MFU of an 8192 bf16 GEMM vs sourced peak", check_gemm_mfu),
        DeepCheck("profiler ranks device time", check_profiler),
        DeepCheck("energy reading plausible", check_energy),
        DeepCheck("settings recorded", check_settings),
        DeepCheck("small suite in fp32/bf16/fp16 completes", check_small_suite),
        DeepCheck("base-preset gpt run completes", check_base_gpt),
        DeepCheck("moe base memory refusal is a clear reason", check_moe_refusal),
    ]


def run_deep(
    name: str,
    *,
    timeout_s: float = DEEP_TIMEOUT_S,
    on_result: Callable[[CheckResult], None] | None = None,
) -> KitReport:
    """Every acceptance line against backend `name`, in this process, each under
    `timeout_s`. Raises BackendError (before any line) when the backend cannot be had."""
    start = time.perf_counter()
    ctx = start_backend(name, timeout_s)
    results = []
    for line in plan_deep_checks():
        result = run_check(Check(line.name, line.run, line.required), ctx, timeout_s)
        results.append(result)
        if on_result is not None:
            on_result(result)
    return KitReport(backend=name, results=results, seconds=time.perf_counter() - start)
