"""The conformance checks. Each takes a KitContext, returns a one-line pass detail, and raises
CheckFailed (the contract is broken) or CheckSkipped (the check does not apply)."""

from __future__ import annotations

import math
import time

import torch
from torch import nn

from backends.base import DTYPES, Availability, Backend, DeviceInfo
from harness.conformance.outcome import CheckFailed, CheckSkipped
from harness.conformance.probes import LongOp, reachable_tensors, same_device
from harness.results.schema import CaseKey
from harness.run.case import CaseSpec
from harness.run.execute import execute_case
from harness.run.plan import RUN_DTYPES
from workloads.base import BuildContext, CaseUnsupported, WorkloadError
from workloads.registry import get_workload

LONG_OP_S = 0.25
"""About how long the op used by the synchronize and timer checks runs."""
COMPLETION_FRACTION = 0.5
"""A reading that includes the op's completion covers at least this fraction of the time
until its result can be read back."""
TIMER_RELATIVE_TOLERANCE = 0.05
TIMER_ABSOLUTE_TOLERANCE_S = 0.002
"""Timer vs host clock over the same long block: |timer - host| <= 5% of host + 2 ms."""
PEAK_PROBE_BYTES = 64 * 2**20
"""Size of the allocation the peak-memory check must see, and then forget after a reset."""
PREPARE_RTOL, PREPARE_ATOL = 1e-3, 1e-4
"""prepare() may reorder fp32 arithmetic (fusion, layouts) but must keep the outputs."""
NOT_DIST_BACKENDS = ("undefined", "fake")


class KitContext:
    """The backend under test, its registry name, and instruments shared between checks."""

    def __init__(self, name: str, backend: Backend) -> None:
        self.name = name
        self.backend = backend
        self.device = backend.device()
        self._long_op: LongOp | None = None

    def long_op(self) -> LongOp:
        """The calibrated known-duration op on this device (built once)."""
        if self._long_op is None:
            self._long_op = LongOp(self.device, LONG_OP_S)
        return self._long_op

    def run_dtype(self) -> str:
        """fp32 when supported, else the first run dtype the backend supports."""
        for name in RUN_DTYPES:
            if self.backend.supports(DTYPES[name]):
                return name
        raise CheckSkipped("the backend declares none of the run dtypes supported")


def check_availability(ctx: KitContext) -> str:
    """availability() returns an Availability, says ok, and says the same when asked again."""
    answers = [type(ctx.backend).availability() for _ in range(2)]
    for answer in answers:
        if not isinstance(answer, Availability):
            raise CheckFailed(f"availability() returned {type(answer).__name__}, not Availability")
        if not answer.ok:
            raise CheckFailed(f"availability() changed its mind: {answer.explain()}")
    return "Availability(ok=True), twice"


def check_identity(ctx: KitContext) -> str:
    """name, device_type and dist_backend are set; device() is of device_type and holds tensors."""
    backend = ctx.backend
    for attribute in ("name", "device_type", "dist_backend"):
        value = getattr(backend, attribute, None)
        if not isinstance(value, str) or not value:
            raise CheckFailed(f"class attribute {attribute} must be a non-empty string: {value!r}")
    if backend.name != ctx.name:
        raise CheckFailed(f"registered as '{ctx.name}' but its name is '{backend.name}'")
    if ctx.device.type != backend.device_type:
        raise CheckFailed(f"device() is {ctx.device}, not of type '{backend.device_type}'")
    tensor = torch.ones(4, device=ctx.device)
    if not same_device(tensor.device, ctx.device):
        raise CheckFailed(f"a tensor created on {ctx.device} landed on {tensor.device}")
    return f"device {ctx.device}"


def check_describe(ctx: KitContext) -> str:
    """describe() returns a consistent DeviceInfo with positive figures."""
    info = ctx.backend.describe()
    if not isinstance(info, DeviceInfo):
        raise CheckFailed(f"describe() returned {type(info).__name__}, not DeviceInfo")
    problems = []
    if info.backend != ctx.backend.name:
        problems.append(f"backend '{info.backend}' != name '{ctx.backend.name}'")
    if info.device_type != ctx.backend.device_type:
        problems.append(f"device_type '{info.device_type}' != '{ctx.backend.device_type}'")
    if not info.name.strip():
        problems.append("empty device name")
    if info.count < 1:
        problems.append(f"count {info.count} < 1")
    if info.memory_bytes is not None and info.memory_bytes <= 0:
        problems.append(f"memory_bytes {info.memory_bytes} <= 0")
    bad_peaks = [k for k, v in info.peak_flops.items() if not (math.isfinite(v) and v > 0)]
    if bad_peaks:
        problems.append(f"non-positive peak_flops for {', '.join(bad_peaks)}")
    if info.peak_flops and not info.peak_source:
        problems.append("peak_flops without a peak_source")
    if problems:
        raise CheckFailed("; ".join(problems))
    return f"{info.name} x{info.count}"


def check_device_facts(ctx: KitContext) -> str:
    """settings() is a str -> str mapping, fp32_downcasts() a list of str, and the energy meter
    and telemetry() answer without raising (a device without them says why)."""
    backend = ctx.backend
    found = backend.settings()
    if not isinstance(found, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in found.items()
    ):
        raise CheckFailed(f"settings() must return dict[str, str], got {found!r:.200}")
    downcasts = backend.fp32_downcasts()
    if not isinstance(downcasts, list) or not all(isinstance(d, str) for d in downcasts):
        raise CheckFailed(f"fp32_downcasts() must return list[str], got {downcasts!r:.200}")
    sample = backend.telemetry()
    if not isinstance(sample, dict):
        raise CheckFailed(f"telemetry() must return dict[str, float], got {sample!r:.200}")
    meter = backend.energy_meter()
    meter.start()
    reading = meter.stop()
    if reading.joules is None and not reading.reason:
        raise CheckFailed("the energy meter gave no joules and no reason")
    energy = (
        f"energy via {reading.method}"
        if reading.joules is not None
        else f"energy not measured ({reading.reason})"
    )
    return f"{len(found)} settings, {energy}"


def check_dist_backend(ctx: KitContext) -> str:
    """dist_backend names a torch.distributed backend this torch has."""
    import torch.distributed as dist

    name = ctx.backend.dist_backend
    if not dist.is_available():
        raise CheckFailed("this torch build has no torch.distributed")
    known = [b for b in dist.Backend.backend_list if b not in NOT_DIST_BACKENDS]
    if name.lower() not in known:
        raise CheckFailed(
            f"'{name}' is not a torch.distributed backend; registered here: {', '.join(known)}"
        )
    probe = getattr(dist, f"is_{name.lower()}_available", None)
    if probe is not None and not probe():
        raise CheckFailed(f"torch.distributed.is_{name.lower()}_available() is False here")
    return f"'{name}' is registered with torch.distributed"


def check_synchronize(ctx: KitContext) -> str:
    """synchronize() returns only after queued device work has completed: reading the result
    back right after it must not have to wait for the rest of the op."""
    op = ctx.long_op()
    op.wait()
    start = time.perf_counter()
    op.run()
    queued = time.perf_counter() - start
    ctx.backend.synchronize()
    synced = time.perf_counter() - start
    op.wait()
    total = time.perf_counter() - start
    residual = total - synced
    if residual > (1 - COMPLETION_FRACTION) * total:
        raise CheckFailed(
            f"after synchronize() returned ({synced * 1e3:.1f} ms), reading the result back "
            f"still waited {residual * 1e3:.1f} ms of a {total * 1e3:.1f} ms op: "
            "synchronize does not wait for queued work"
        )
    how = (
        "ops complete as they are queued"
        if queued >= COMPLETION_FRACTION * total
        else f"queued in {queued * 1e3:.1f} ms"
    )
    return f"a {total * 1e3:.1f} ms op was done when synchronize() returned ({how})"


def check_timer_completion(ctx: KitContext) -> str:
    """The timer's reading of an asynchronous op includes the op's completion: it covers at
    least half of the host time until the result could be read back."""
    op = ctx.long_op()
    timer = ctx.backend.timer()
    op.wait()
    start = time.perf_counter()
    reading = timer.time_block(op.run, 1)
    op.wait()
    total = time.perf_counter() - start
    if reading < COMPLETION_FRACTION * total:
        raise CheckFailed(
            f"the timer read {reading * 1e3:.2f} ms for an op whose result took "
            f"{total * 1e3:.1f} ms to arrive: it stops before the device work is done"
        )
    return f"{reading * 1e3:.1f} ms read; result ready after {total * 1e3:.1f} ms"


def check_timer_accuracy(ctx: KitContext) -> str:
    """The timer agrees with the host clock measured around the same long block
    (tolerance: 5% of the host reading + 2 ms; median of 3)."""
    op = ctx.long_op()
    timer = ctx.backend.timer()
    pairs = []
    for _ in range(3):
        ctx.backend.synchronize()
        start = time.perf_counter()
        reading = timer.time_block(op.run, 1)
        ctx.backend.synchronize()
        pairs.append((reading, time.perf_counter() - start))
    reading, host = sorted(pairs, key=lambda p: p[0] - p[1])[1]
    allowed = TIMER_RELATIVE_TOLERANCE * host + TIMER_ABSOLUTE_TOLERANCE_S
    if not math.isfinite(reading) or abs(reading - host) > allowed:
        raise CheckFailed(
            f"timer {reading * 1e3:.2f} ms vs host clock {host * 1e3:.2f} ms: off by more than "
            f"{allowed * 1e3:.2f} ms (5% + 2 ms)"
        )
    return f"timer {reading * 1e3:.1f} ms, host {host * 1e3:.1f} ms (tolerance 5% + 2 ms)"


def check_peak_memory(ctx: KitContext) -> str:
    """peak_memory_bytes() is an int >= 0 everywhere or None everywhere; a window sees a
    64 MiB allocation, and reset_peak_memory() starts a window that has forgotten it."""
    backend = ctx.backend

    def window(allocate: bool) -> int | None:
        backend.synchronize()
        backend.reset_peak_memory()
        if allocate:
            block = torch.ones(PEAK_PROBE_BYTES // 4, device=ctx.device)
            backend.synchronize()
            peak = backend.peak_memory_bytes()
            del block
            return peak
        backend.synchronize()
        return backend.peak_memory_bytes()

    empty, full, after = window(False), window(True), window(False)
    readings = [empty, full, after]
    if all(r is None for r in readings):
        return "not reported (None), consistently"
    if any(r is None for r in readings):
        raise CheckFailed(f"inconsistent: sometimes None, sometimes a number: {readings}")
    if any(not isinstance(r, int) or r < 0 for r in readings):
        raise CheckFailed(f"peak_memory_bytes() must be an int >= 0: {readings}")
    mib = 2**20
    assert empty is not None and full is not None and after is not None
    if full - empty < PEAK_PROBE_BYTES // 2:
        raise CheckFailed(
            f"a 64 MiB allocation raised the peak by only {(full - empty) / mib:.1f} MiB"
        )
    if full - after < PEAK_PROBE_BYTES // 2:
        raise CheckFailed(
            f"after reset_peak_memory() the peak is still {after / mib:.1f} MiB "
            f"(with the 64 MiB block: {full / mib:.1f} MiB): reset does not start a new window"
        )
    return (
        f"empty {empty / mib:.1f} MiB, with 64 MiB {full / mib:.1f} MiB, "
        f"after reset {after / mib:.1f} MiB"
    )


def check_seed(ctx: KitContext) -> str:
    """seed(s) makes random tensors on the device repeat."""
    draws = []
    for _ in range(2):
        ctx.backend.seed(1234)
        draws.append(torch.randn(64, device=ctx.device).cpu())
    if not torch.equal(draws[0], draws[1]):
        raise CheckFailed("two draws after seed(1234) differ")
    return "repeatable"


def _small_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(32, 64), nn.GELU(), nn.LayerNorm(64), nn.Linear(64, 8))


def check_prepare(ctx: KitContext) -> str:
    """prepare() returns a module with the same outputs, through which training still works."""
    model = _small_model().to(ctx.device).eval()
    inputs = torch.randn(16, 32, generator=torch.Generator().manual_seed(0)).to(ctx.device)
    with torch.no_grad():
        expected = model(inputs).float().cpu()
    prepared = ctx.backend.prepare(model)
    if not isinstance(prepared, nn.Module):
        raise CheckFailed(f"prepare() returned {type(prepared).__name__}, not an nn.Module")
    prepared.eval()
    with torch.no_grad():
        got = prepared(inputs).float().cpu()
    if got.shape != expected.shape:
        raise CheckFailed(f"output shape changed: {tuple(expected.shape)} -> {tuple(got.shape)}")
    if not torch.allclose(got, expected, rtol=PREPARE_RTOL, atol=PREPARE_ATOL):
        diff = (got - expected).abs().max().item()
        raise CheckFailed(f"outputs changed by up to {diff:.3g} (rtol 1e-3, atol 1e-4)")
    prepared.train()
    prepared(inputs).float().square().mean().backward()
    grads = [p.grad for p in prepared.parameters() if p.requires_grad]
    if not grads or any(g is None or not bool(torch.isfinite(g).all()) for g in grads):
        raise CheckFailed("a backward pass through the prepared model gave missing or NaN grads")
    return "same outputs; backward works"


def check_dtype(ctx: KitContext, name: str) -> str:
    """A dtype declared supported runs forward and backward and autocast really casts to it;
    a declared-unsupported run dtype is refused by the harness as 'unsupported'."""
    dtype = DTYPES[name]
    declared = ctx.backend.supports(dtype)
    if not isinstance(declared, bool):
        raise CheckFailed(f"supports({name}) returned {declared!r}, not a bool")
    if declared:
        return _dtype_runs(ctx, name, dtype)
    if name not in RUN_DTYPES:
        raise CheckSkipped(f"declared unsupported; {name} is not a run dtype, nothing to refuse")
    return _dtype_refused(ctx, name)


def _dtype_runs(ctx: KitContext, name: str, dtype: torch.dtype) -> str:
    torch.manual_seed(0)
    layer = nn.Linear(32, 32).to(device=ctx.device, dtype=dtype)
    out = layer(torch.randn(8, 32).to(device=ctx.device, dtype=dtype))
    if out.dtype != dtype:
        raise CheckFailed(f"a {name} Linear produced {out.dtype}")
    out.float().square().mean().backward()
    if layer.weight.grad is None or not bool(torch.isfinite(layer.weight.grad).all()):
        raise CheckFailed(f"backward in {name} gave missing or non-finite gradients")
    layer32 = nn.Linear(32, 32).to(ctx.device)
    with ctx.backend.autocast(dtype):
        cast = layer32(torch.randn(8, 32).to(ctx.device))
    expected = dtype if dtype in (torch.bfloat16, torch.float16) else torch.float32
    if cast.dtype != expected:
        raise CheckFailed(
            f"under autocast({name}) an fp32 Linear produced {cast.dtype}, expected {expected}"
        )
    mixed = "autocast casts to it" if expected != torch.float32 else "autocast is a no-op"
    return f"declared supported: forward+backward run, {mixed}"


def _dtype_refused(ctx: KitContext, name: str) -> str:
    workload = get_workload("mlp")
    key = CaseKey(
        workload=workload.name,
        workload_version=workload.version,
        mode="infer",
        dtype=name,
        batch=1,
        preset="tiny",
    )
    spec = CaseSpec(backend=ctx.name, key=key, params=workload.resolve_params("tiny", {}))
    result = execute_case(spec)
    if result.status != "unsupported":
        raise CheckFailed(f"declared unsupported, yet the harness ran it: status {result.status}")
    return "declared unsupported; the harness refuses it"


def check_placement(ctx: KitContext, workload_name: str) -> str:
    """The workload's tiny build puts its model and data on the backend's device."""
    workload = get_workload(workload_name)
    if "tiny" not in workload.presets:
        raise CheckSkipped("the workload has no tiny preset")
    dtype_name = ctx.run_dtype()
    try:
        params = workload.resolve_params("tiny", {})
        build_ctx = BuildContext.seeded(
            ctx.backend,
            dtype_name=dtype_name,
            batch_size=int(params.get("batch", 1)),
            preset="tiny",
            params=params,
        )
        instance = workload.build(build_ctx)
    except (WorkloadError, CaseUnsupported) as exc:
        raise CheckSkipped(f"the workload refuses this case: {exc}") from exc
    tensors = instance.placement_tensors()
    if tensors is None:
        tensors = dict(reachable_tensors(instance))
    if not tensors:
        raise CheckSkipped("the instance exposes no model or tensors to inspect")
    wrong = [
        f"{path} on {t.device}"
        for path, t in tensors.items()
        if not same_device(t.device, ctx.device)
    ]
    if wrong:
        raise CheckFailed(
            f"{len(wrong)} of {len(tensors)} tensors are not on {ctx.device}: "
            + ", ".join(wrong[:4])
        )
    return f"{len(tensors)} tensors on {ctx.device} ({dtype_name}, tiny)"
