"""What torchrun runs on every rank: `python -m harness.distributed.worker JOB_FOLDER`.

Each rank initializes the process group with the backend's `dist_backend` (timeout = the
case timeout), plus a gloo control group for the harness's own barriers and gathers, then
runs the job's cases in order:

1. append `start`, barrier (control group);
2. build the workload with a DistributedBuildContext (training through DDP), time the step
   with `measure_synchronized` (same schedule on every rank);
3. gather every rank's timing on rank 0, which builds the CaseResult (step time = max over
   ranks per sample, global throughput = world x per-rank items / step time), appends it to
   the results file (atomic replace) and appends `done`.

A rank whose case raises (other than CaseUnsupported, which every rank hits alike) writes its
error file and exits: the other ranks would otherwise wait in a collective, so torchrun ends
the job and the supervisor records the failed case and relaunches the rest. A watchdog thread
exits the rank if its parent (the torchrun agent) disappears, so no rank outlives the job.
"""

from __future__ import annotations

import os
import socket
import statistics
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import torch.distributed as dist
from pydantic import BaseModel

from backends.base import Backend
from backends.registry import get_backend
from harness.distributed.context import DistributedBuildContext
from harness.distributed.job import (
    DistJob,
    RankError,
    append_event,
    inject_fault,
    job_file,
    write_error,
    write_pid,
)
from harness.distributed.measure import SyncedSamples, measure_synchronized
from harness.distributed.phases import ddp_phases
from harness.errors import failure, raising_frame
from harness.results.derive import apply_peaks
from harness.results.schema import (
    CaseError,
    CaseResult,
    CollectivePoint,
    RankTiming,
    Throughput,
)
from harness.results.store import load_run, save_run
from harness.run.execute import CaseSpec, failed, measured_result
from workloads.allreduce import CollectiveInstance
from workloads.base import CaseUnsupported
from workloads.registry import get_workload

PARENT_POLL_S = 0.5
WARMUP_CALLS_PER_SIZE = 3


class RankReport(BaseModel):
    """What each rank sends to rank 0 after a case."""

    timing: RankTiming | None = None
    nonfinite: str | None = None


class Rank:
    """This process's place in the job."""

    def __init__(self) -> None:
        self.rank = int(os.environ["RANK"])
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.world = int(os.environ["WORLD_SIZE"])
        self.host = socket.gethostname()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _watch_parent(supervisor: int | None) -> None:
    """Exit at once if the parent process (torchrun's agent) or the supervising `bench`
    process goes away."""
    parent = os.getppid()

    def loop() -> None:
        while True:
            time.sleep(PARENT_POLL_S)
            if os.getppid() != parent or (supervisor is not None and not _alive(supervisor)):
                os._exit(4)

    threading.Thread(target=loop, name="parent-watchdog", daemon=True).start()


def _timing(me: Rank, samples: SyncedSamples, backend: Backend) -> RankTiming:
    local = samples.local_samples_s
    return RankTiming(
        rank=me.rank,
        local_rank=me.local_rank,
        host=me.host,
        samples_s=local,
        median=statistics.median(local),
        peak_memory_bytes=backend.peak_memory_bytes(),
    )


def _measure(
    spec: CaseSpec, backend: Backend, me: Rank, control: dist.ProcessGroup | None
) -> tuple[CaseResult | None, RankReport]:
    """Build and time one case on this rank; rank 0 gets the CaseResult (others None)."""
    key = spec.key
    reason = spec.unsupported_reason(backend)
    if reason is not None:
        return failed(spec, "unsupported", reason), RankReport()
    workload = get_workload(key.workload)
    ctx = spec.build_context(backend, DistributedBuildContext)
    try:
        instance = workload.build(ctx)
    except CaseUnsupported as exc:  # decided alike on every rank, before any collective
        return failed(spec, "unsupported", str(exc)), RankReport()
    if isinstance(instance, CollectiveInstance):
        return _measure_collective(spec, instance, backend, me, control)
    backend.synchronize()
    backend.reset_peak_memory()
    samples = measure_synchronized(instance.step(key.mode), backend, control, spec.measure)
    report = RankReport(timing=_timing(me, samples, backend), nonfinite=instance.nonfinite_reason())
    if key.mode == "train" and not ctx.wrapped_modules():
        reason = (
            f"workload '{key.workload}' trains without calling ctx.for_training(model), so its "
            "steps cannot run data-parallel (no gradient all-reduce); not measured as DDP"
        )
        return failed(spec, "unsupported", reason), report
    result = measured_result(spec, instance, samples.measurement(), me.world)
    result.phases = ddp_phases(instance, key.mode, backend, ctx.wrapped_modules(), control)
    return result, report


def _measure_collective(
    spec: CaseSpec,
    instance: CollectiveInstance,
    backend: Backend,
    me: Rank,
    control: dist.ProcessGroup | None,
) -> tuple[CaseResult, RankReport]:
    """Sweep the message sizes; the case's measurement is the largest size's, and every size
    becomes a CollectivePoint (algbw, busbw). The time budget is shared over the sizes."""
    mode = spec.key.mode
    sweep = instance.sweep(mode)
    share = len(sweep)
    settings = spec.measure.model_copy(
        update={
            "max_time_s": spec.measure.max_time_s / share,
            "warmup_s": spec.measure.warmup_s / share,
        }
    )
    factor = instance.bus_factor(mode)
    points: list[CollectivePoint] = []
    samples: SyncedSamples | None = None
    for _, closure in sweep:  # connections and buffers of every size, before any timing
        for _ in range(WARMUP_CALLS_PER_SIZE):
            closure()
    backend.synchronize()
    backend.reset_peak_memory()
    for size, closure in sweep:
        samples = measure_synchronized(closure, backend, control, settings)
        median = statistics.median(samples.step_samples_s)
        algbw = size / median
        points.append(
            CollectivePoint(
                size_bytes=size,
                median_s=median,
                algbw=algbw,
                busbw=algbw * factor,
                samples=len(samples.step_samples_s),
            )
        )
    assert samples is not None
    largest = points[-1]
    result = CaseResult(
        key=spec.key,
        status="ok",
        measurement=samples.measurement(),
        throughput=Throughput(value=largest.busbw, unit="B/s (busbw)"),
        bytes_per_step=float(largest.size_bytes),
        achieved_bandwidth=largest.algbw,
        collectives=points,
        extra={
            "latency_us": points[0].median_s * 1e6,
            "busbw_GBps_max": max(p.busbw for p in points) / 1e9,
            "bus_factor": factor,
        },
    )
    return result, RankReport(timing=_timing(me, samples, backend))


def _combine(result: CaseResult, reports: list[RankReport]) -> CaseResult:
    """Rank 0: attach every rank's timing; any rank's NaN/Inf fails the case."""
    timings = [r.timing for r in reports if r.timing is not None]
    if timings:
        result.per_rank = sorted(timings, key=lambda t: t.rank)
        memories = [t.peak_memory_bytes for t in timings if t.peak_memory_bytes is not None]
        result.peak_memory_bytes = max(memories) if memories else None
    bad = [f"rank {i}: {r.nonfinite}" for i, r in enumerate(reports) if r.nonfinite]
    if bad and result.status == "ok":
        result.status = "failed"
        result.error = CaseError(kind="nonfinite", message="; ".join(bad))
    return result


def _give_up(folder: Path, me: Rank, exc: BaseException) -> None:
    """Record why this rank cannot go on, then exit (torchrun ends the other ranks)."""
    kind, described = failure(exc)
    frame = raising_frame(exc)
    message = f"rank {me.rank}: {described}"
    in_collective = frame is not None and "torch/distributed" in frame.filename.replace("\\", "/")
    write_error(folder, me.rank, RankError(kind=kind, message=message, in_collective=in_collective))
    sys.stderr.write(message + "\n")
    sys.stderr.flush()
    os._exit(3)


def run_job(folder: Path) -> None:
    """Run every case of the job in `folder` on this rank (see module docstring)."""
    job = DistJob.model_validate_json(job_file(folder).read_text(encoding="utf-8"))
    _watch_parent(job.supervisor_pid)
    me = Rank()
    write_pid(folder, me.rank)
    backend = get_backend(job.backend, me.local_rank)
    dist.init_process_group(backend.dist_backend, timeout=timedelta(seconds=job.case_timeout_s))
    control = None if backend.dist_backend == "gloo" else dist.new_group(backend="gloo")
    for offset, spec in enumerate(job.specs):
        index = job.first_index + offset
        spec = spec.model_copy(update={"key": spec.key.model_copy(update={"nproc": me.world})})
        append_event(folder, me.rank, "start", index)
        inject_fault(me.rank, index)
        started = time.perf_counter()
        started_at = datetime.now(timezone.utc)
        try:
            dist.barrier(group=control)
            result, report = _measure(spec, backend, me, control)
            append_event(folder, me.rank, "measured", index)
            reports: list[RankReport | None] = [None] * me.world if me.rank == 0 else []
            dist.gather_object(report, reports if me.rank == 0 else None, dst=0, group=control)
        except Exception as exc:
            _give_up(folder, me, exc)
            return
        if me.rank == 0 and result is not None:
            result = _combine(result, [r for r in reports if r is not None])
            result.started_at = started_at
            result.duration_s = time.perf_counter() - started
            _save(job, result)
            append_event(folder, me.rank, "done", index, result)
    dist.barrier(group=control)
    dist.destroy_process_group()
    # Skip interpreter teardown: destructors of communication threads racing the end of
    # other nodes' stores can abort (SIGABRT) a rank whose work is already done.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _save(job: DistJob, result: CaseResult) -> None:
    if job.results_path is None:
        return
    path = Path(job.results_path)
    record = load_run(path)
    record.cases.append(result)
    apply_peaks(record)
    save_run(record, path)


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit("usage: python -m harness.distributed.worker JOB_FOLDER (started by torchrun)")
    run_job(Path(sys.argv[1]))


if __name__ == "__main__":
    main()
