"""Synthetic RunRecords (real schema objects, made-up timings) for analysis and report tests.

They contain the workloads the report knows about (mlp, convnet, gpt with prefill/decode,
the matmul and bandwidth probes) and fidelity results, with known numbers.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np

from backends.base import DeviceInfo
from harness.analysis.mfu import apply_peaks
from harness.measurement.timing import summarize
from harness.results.config import RunConfig
from harness.results.fidelity import TOLERANCES, FidelityResult
from harness.results.schema import (
    CaseError,
    CaseKey,
    CaseResult,
    EnvironmentInfo,
    RunRecord,
    Throughput,
)
from workloads.flops import decoder_serving_bytes

HOSTILE = "<script>alert(1)</script>|**x**"

GPT_PARAMS: dict[str, Any] = {
    "seq_len": 128,
    "d_model": 128,
    "n_layer": 4,
    "n_head": 4,
    "vocab": 256,
    "tied": True,
    "prompt_len": 128,
    "cache_len": 127,
}


def samples(median: float, n: int = 20, spread: float = 0.02, seed: int = 0) -> list[float]:
    """`n` positive samples around `median` (relative spread), reproducible."""
    rng = np.random.default_rng(seed)
    return [float(median * (1 + spread * (x - 0.5))) for x in rng.random(n)]


def case(
    workload: str,
    mode: str,
    seconds: float,
    *,
    dtype: str = "fp32",
    batch: int = 8,
    flops: float | None = None,
    items: float = 8.0,
    unit: str = "samples",
    moved: float | None = None,
    memory: int | None = None,
    params: dict[str, Any] | None = None,
    seed: int = 0,
) -> CaseResult:
    """An ok case with a measurement around `seconds` per step."""
    m = summarize(samples(seconds, seed=seed), iterations_per_sample=1)
    return CaseResult(
        key=CaseKey(
            workload=workload,
            workload_version="1",
            mode=mode,
            dtype=dtype,
            batch=batch,
            preset="small",
            params=params or {},
        ),
        status="ok",
        measurement=m,
        throughput=Throughput(value=items / m.median, unit=f"{unit}/s"),
        flops_per_step=flops,
        achieved_flops=flops / m.median if flops else None,
        bytes_per_step=moved,
        achieved_bandwidth=moved / m.median if moved else None,
        peak_memory_bytes=memory,
    )


def failed_case(workload: str, mode: str, kind: str, message: str) -> CaseResult:
    status = "unsupported" if kind == "unsupported" else "failed"
    return CaseResult(
        key=CaseKey(
            workload=workload,
            workload_version="1",
            mode=mode,
            dtype="bf16",
            batch=8,
            preset="small",
        ),
        status=status,  # type: ignore[arg-type]
        error=CaseError(kind=kind, message=message),  # type: ignore[arg-type]
    )


def fidelity(
    workload: str,
    backend: str,
    verdict: str = "pass",
    drift: float = 1e-4,
    nan_at: int | None = None,
) -> FidelityResult:
    """A fidelity result with decaying loss curves; the target drifts by `drift`."""
    ref = [float(5.5 * np.exp(-0.03 * i) + 0.5) for i in range(30)]
    target: list[float | None] = [x * (1 + drift * (i % 3)) for i, x in enumerate(ref)]
    if nan_at is not None:
        target = [*target[:nan_at], None]
    return FidelityResult(
        workload=workload,
        backend=backend,
        dtype="fp32",
        preset="small",
        batch=8,
        steps=30,
        reference="cpu:fp32",
        target_loss=target,
        reference_loss=list(ref),
        target_grad_norm=[1.0 + 0.01 * i for i in range(len(target))],
        reference_grad_norm=[1.0 + 0.01 * i for i in range(30)],
        first_nonfinite_step=nan_at,
        deterministic=True,
        determinism_max_abs_diff=0.0,
        max_rel_loss_deviation=2 * drift,
        max_rel_grad_norm_deviation=0.0,
        final_loss_ratio=1.0,
        tolerance=TOLERANCES["fp32"],
        verdict=verdict,  # type: ignore[arg-type]
        reasons=[] if verdict == "pass" else [f"deliberate {verdict}"],
    )


def record(
    backend: str,
    device: str,
    *,
    label: str = "",
    train_slowdown: float = 1.0,
    extra_cases: list[CaseResult] | None = None,
    checks: list[FidelityResult] | None = None,
    offset_s: int = 0,
) -> RunRecord:
    """A complete run with mlp, convnet, gpt (all modes), matmul and bandwidth probes.

    Training takes 3x the inference time (matching 3x FLOPs) times `train_slowdown`, so the
    training penalty of every workload is `train_slowdown`."""
    mlp_f, conv_f, gpt_f = 2e9, 8e9, 4e9
    s = train_slowdown
    cases = [
        case("mlp", "infer", 0.010, flops=mlp_f, memory=50 << 20, seed=1),
        case("mlp", "train", 0.030 * s, flops=3 * mlp_f, memory=150 << 20, seed=2),
        case("convnet", "infer", 0.040, flops=conv_f, unit="images", memory=80 << 20, seed=3),
        case(
            "convnet", "train", 0.120 * s, flops=3 * conv_f, unit="images", memory=300 << 20, seed=4
        ),
        case(
            "gpt", "infer", 0.020, flops=gpt_f, items=1024, unit="tokens", params=GPT_PARAMS, seed=5
        ),
        case(
            "gpt",
            "train",
            0.060 * s,
            flops=3 * gpt_f,
            items=1024,
            unit="tokens",
            params=GPT_PARAMS,
            seed=6,
        ),
        case(
            "gpt",
            "prefill",
            0.018,
            flops=gpt_f,
            moved=decoder_serving_bytes(8, 128, 0, 4, 128, 256, True, "fp32", head_rows=8),
            items=1024,
            unit="tokens",
            params=GPT_PARAMS,
            seed=7,
        ),
        case(
            "gpt",
            "decode",
            0.002,
            flops=gpt_f / 128,
            moved=decoder_serving_bytes(8, 1, 127, 4, 128, 256, True, "fp32", head_rows=8),
            items=8,
            unit="tokens",
            params=GPT_PARAMS,
            seed=8,
        ),
        case("matmul", "probe", 0.01, flops=4e9, items=4e9, unit="FLOP", seed=9),
        case("matmul", "probe", 0.02, dtype="bf16", flops=4e9, items=4e9, unit="FLOP", seed=10),
        case("bandwidth", "copy", 0.001, moved=2e7, items=2e7, unit="B", seed=11),
        case("bandwidth", "triad", 0.001, moved=3e7, items=3e7, unit="B", seed=12),
        *(extra_cases or []),
    ]
    start = datetime(2026, 11, 30, 10, 0, tzinfo=timezone.utc) + timedelta(seconds=offset_s)
    run = RunRecord(
        run_id=f"{backend}-{offset_s:04d}-0000",
        started_at=start,
        finished_at=start + timedelta(minutes=2),
        status="complete",
        label=label,
        backend=backend,
        config=RunConfig(backend=backend, fidelity=True),
        environment=EnvironmentInfo(
            hostname="host",
            platform="Linux",
            python="3.11",
            cpu_model="cpu",
            logical_cores=2,
            torch_version="2.13.0",
            torch_build="cpu",
            torch_threads=2,
            torch_interop_threads=1,
            accelbench_version="0.1.0",
        ),
        device=DeviceInfo(backend=backend, device_type=backend, name=device),
        cases=cases,
        fidelity=checks if checks is not None else [fidelity("mlp", backend)],
    )
    apply_peaks(run)
    return run
