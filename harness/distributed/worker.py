"""What torchrun runs on every rank: `python -m harness.distributed.worker JOB_FOLDER`.

Each rank initializes the process group with the backend's `dist_backend` (timeout = the
case timeout), plus a gloo control group for the harness's own barriers and gathers, then
runs the job's cases in order:

1. append `start`, barrier (control group);
2. build the case and measure its rounds (the job's `rounds`, back to back) through the case
   pipeline (harness.run.pipeline) with `DistributedStrategy`: a DistributedBuildContext
   (training through DDP), the step timed with `measure_synchronized` (same schedule on
   every rank), DDP phases;
3. gather every rank's RoundResults on rank 0, which combines each round's views
   (`combine_ranks`), folds the rounds into the CaseResult like the single-process runner
   (harness.run.fold: step time = max over ranks per sample, global throughput = world x
   per-rank items / step time), appends it to the results file (atomic replace) and
   appends `done`.

A rank whose case raises (other than CaseUnsupported, which every rank hits alike) writes its
error file and exits: the other ranks would otherwise wait in a collective, so torchrun ends
the job and the supervisor records the failed case and relaunches the rest. A watchdog thread
exits the rank if its parent (the torchrun agent) disappears, so no rank outlives the job.
"""

from __future__ import annotations

import math
import os
import socket
import statistics
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import torch.distributed as dist

from backends.base import Backend
from backends.registry import get_backend, get_backend_class
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
from harness.distributed.measure import SyncedSamples, all_max, measure_synchronized
from harness.distributed.phases import ATTRIBUTION, ITERATIONS, ddp_phase_timer
from harness.errors import failed_result, failure, raising_frame
from harness.results.config import MeasureSettings
from harness.results.schema import (
    CaseError,
    CaseResult,
    CollectivePoint,
    RankTiming,
    Throughput,
)
from harness.results.store import load_run, save_run
from harness.run.case import CaseSpec, PhaseSamples, RoundResult, RoundSpec
from harness.run.fold import fold_rounds
from harness.run.pipeline import (
    ELSEWHERE_NONFINITE,
    BuiltCase,
    Timed,
    build_case,
    measure_round,
    phase_samples,
    round_settings,
    with_fallbacks,
)
from workloads.allreduce import CollectiveInstance
from workloads.base import BuildContext, CaseUnsupported, Instance

PARENT_POLL_S = 0.5
WARMUP_CALLS_PER_SIZE = 3


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


class DistributedStrategy:
    """The case pipeline's strategy on one rank of a torchrun job: a data-parallel build
    context, samples synchronised per block (`measure_synchronized`), DDP phases, and
    agreement over the control group wherever ranks must take the same branch."""

    profile_refusal: str | None = (
        "not profiled under --nproc > 1: profiling one rank's step would stall the others"
    )

    def __init__(self, me: Rank, control: dist.ProcessGroup | None) -> None:
        self.me = me
        self.control = control
        self.world = me.world
        self.energy_refusal: str | None = (
            f"not measured with {me.world} processes: one rank's energy meter does not see "
            "the other ranks' devices"
        )
        self.context: DistributedBuildContext | None = None
        """The context of the case being measured (its DDP-wrapped modules)."""

    def context_kind(self) -> type[BuildContext] | None:
        return DistributedBuildContext

    def time_step(
        self,
        step: Callable[[], object],
        backend: Backend,
        settings: MeasureSettings,
        time_cold_start: bool,
        iterations: int | None,
        on_warm: Callable[[], None] | None = None,
    ) -> Timed:
        samples = measure_synchronized(
            step,
            backend,
            self.control,
            settings,
            time_cold_start=time_cold_start,
            iterations=iterations,
        )
        return _timed(samples, self.me, backend)

    def any_rank(self, flag: bool) -> bool:
        (value,) = all_max([float(flag)], self.control)
        return value > 0

    def phases(
        self, instance: Instance, mode: str, backend: Backend, share: float, warm_up: bool
    ) -> PhaseSamples | None:
        wrapped = self.context.wrapped_modules() if self.context is not None else []
        timer = ddp_phase_timer(
            instance,
            mode,
            backend,
            wrapped,
            self.control,
            max(1, math.ceil(ITERATIONS * share)),
        )
        return phase_samples(timer, instance, ATTRIBUTION) if timer is not None else None


def _timed(samples: SyncedSamples, me: Rank, backend: Backend) -> Timed:
    """One round's timing: the step samples (max over ranks), this rank's own samples."""
    local = samples.local_samples_s
    return Timed(
        samples_s=samples.step_samples_s,
        iterations_per_sample=samples.iterations_per_sample,
        warmup_iterations=samples.warmup_iterations,
        cold_start_s=samples.cold_start_s,
        total_time_s=samples.total_time_s,
        stable=samples.stable,
        per_rank=[
            RankTiming(
                rank=me.rank,
                local_rank=me.local_rank,
                host=me.host,
                samples_s=local,
                median=statistics.median(local),
                peak_memory_bytes=backend.peak_memory_bytes(),
            )
        ],
    )


def _measure_rounds(
    spec: CaseSpec,
    backend: Backend,
    rounds: int,
    strategy: DistributedStrategy,
    on_round: Callable[[], None],
) -> list[RoundResult]:
    """Build one case through the case pipeline and measure its `rounds` rounds on this rank,
    back to back, calling `on_round()` after each; the rounds as this rank saw them (rank 0
    combines every rank's)."""
    key = spec.key
    try:
        built = build_case(spec, backend, strategy)
    except CaseUnsupported as exc:  # decided alike on every rank, before any collective
        return [failed_result(RoundResult, key, "unsupported", str(exc))]
    context = built.extras["context"]
    strategy.context = context
    if key.mode == "train" and not context.wrapped_modules():
        reason = (
            f"workload '{key.workload}' trains without calling ctx.for_training(model), so its "
            "steps cannot run data-parallel (no gradient all-reduce); not measured as DDP"
        )
        return [failed_result(RoundResult, key, "unsupported", reason)]
    results: list[RoundResult] = []
    for index in range(rounds):
        job = RoundSpec(case=spec, round=index, rounds=rounds)
        if isinstance(built.instance, CollectiveInstance):
            result = _collective_round(built, job, strategy)
        else:
            result = with_fallbacks(lambda job=job: measure_round(built, job, strategy))
        results.append(result)
        on_round()
        if strategy.any_rank(result.status != "ok"):
            break
    return results


def _collective_round(
    built: BuiltCase, job: RoundSpec, strategy: DistributedStrategy
) -> RoundResult:
    """Sweep the message sizes for one round; the round's samples are the largest size's,
    and every size becomes a CollectivePoint (algbw, busbw). The round's time budget is
    shared over the sizes."""
    spec, backend = built.spec, built.backend
    instance = built.instance
    assert isinstance(instance, CollectiveInstance)
    mode = spec.key.mode
    sweep = instance.sweep(mode)
    share = len(sweep)
    budget = round_settings(spec.measure, job.rounds, first=job.round == 0)
    settings = budget.model_copy(
        update={"max_time_s": budget.max_time_s / share, "warmup_s": budget.warmup_s / share}
    )
    factor = instance.bus_factor(mode)
    points: list[CollectivePoint] = []
    samples: SyncedSamples | None = None
    if job.round == 0:
        for _, closure in sweep:  # connections and buffers of every size, before any timing
            for _ in range(WARMUP_CALLS_PER_SIZE):
                closure()
        backend.synchronize()
        backend.reset_peak_memory()
    for size, closure in sweep:
        samples = measure_synchronized(closure, backend, strategy.control, settings)
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
    timed = _timed(samples, strategy.me, backend)
    largest = points[-1]
    return RoundResult(
        key=spec.key,
        round=job.round,
        samples_s=timed.samples_s,
        iterations_per_sample=timed.iterations_per_sample,
        warmup_iterations=timed.warmup_iterations,
        cold_start_s=timed.cold_start_s,
        total_time_s=timed.total_time_s,
        stable=timed.stable,
        world=1,  # the figures below are the collective's own, not per process
        work_items=float(largest.size_bytes),
        work_unit="bytes",
        bytes_moved=float(largest.size_bytes),
        extra={
            "latency_us": points[0].median_s * 1e6,
            "busbw_GBps_max": max(p.busbw for p in points) / 1e9,
            "bus_factor": factor,
        },
        energy_note=strategy.energy_refusal,
        per_rank=timed.per_rank,
        collectives=points,
    )


def combine_ranks(rounds: list[RoundResult]) -> RoundResult:
    """Rank 0: one round from every rank's view of it (rank order): rank 0's samples (the
    step times are alike on every rank), every rank's own timing, the highest peak memory,
    the union of host fallbacks; any rank's failure (NaN/Inf) fails the round, naming the
    ranks."""
    first = rounds[0]
    timings = sorted((t for r in rounds for t in r.per_rank or []), key=lambda t: t.rank)
    peaks = [r.peak_memory_bytes for r in rounds if r.peak_memory_bytes is not None]
    update: dict[str, Any] = {
        "per_rank": timings or None,
        "peak_memory_bytes": max(peaks) if peaks else None,
        "host_fallbacks": sorted({op for r in rounds for op in r.host_fallbacks}),
    }
    bad = [
        (i, r.error)
        for i, r in enumerate(rounds)
        if r.error is not None and r.error.message != ELSEWHERE_NONFINITE
    ]
    if bad and first.status != "unsupported":
        message = "; ".join(f"rank {i}: {e.message}" for i, e in bad)
        update.update(status="failed", error=CaseError(kind=bad[0][1].kind, message=message))
    return first.model_copy(update=update)


def _collective_figures(result: CaseResult, last: RoundResult) -> CaseResult:
    """A collective's headline figures from its last round's sweep: bus bandwidth of the
    largest size as throughput, its algbw as achieved bandwidth, every size's point."""
    points = last.collectives or []
    if result.status != "ok" or not points:
        return result
    largest = points[-1]
    return result.model_copy(
        update={
            "throughput": Throughput(value=largest.busbw, unit="B/s (busbw)"),
            "achieved_bandwidth": largest.algbw,
            "collectives": points,
        }
    )


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
    get_backend_class(job.backend).prepare_process()  # before any torch op starts threads
    backend = get_backend(job.backend, me.local_rank)
    dist.init_process_group(backend.dist_backend, timeout=timedelta(seconds=job.case_timeout_s))
    control = None if backend.dist_backend == "gloo" else dist.new_group(backend="gloo")
    strategy = DistributedStrategy(me, control)
    for offset, spec in enumerate(job.specs):
        index = job.first_index + offset
        spec = spec.model_copy(update={"key": spec.key.model_copy(update={"nproc": me.world})})
        append_event(folder, me.rank, "start", index)
        inject_fault(me.rank, index)
        started = time.perf_counter()
        started_at = datetime.now(timezone.utc)
        try:
            dist.barrier(group=control)
            rounds = _measure_rounds(
                spec,
                backend,
                job.rounds,
                strategy,
                lambda index=index: append_event(folder, me.rank, "round", index),
            )
            append_event(folder, me.rank, "measured", index)
            gathered: list[list[RoundResult] | None] = [None] * me.world if me.rank == 0 else []
            dist.gather_object(rounds, gathered if me.rank == 0 else None, dst=0, group=control)
        except Exception as exc:
            _give_up(folder, me, exc)
            return
        if me.rank == 0:
            views = [r for r in gathered if r is not None]
            combined = [combine_ranks([view[i] for view in views]) for i in range(len(rounds))]
            result = fold_rounds(spec.key, combined, spec.measure.precision)
            result = _collective_figures(result, combined[-1])
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
    save_run(record, path)


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit("usage: python -m harness.distributed.worker JOB_FOLDER (started by torchrun)")
    run_job(Path(sys.argv[1]))


if __name__ == "__main__":
    main()
