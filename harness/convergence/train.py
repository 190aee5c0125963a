"""The torch side of the converge mode: train one seed of a workload, evaluate it on held-out
batches every few steps, stop at the target or the step cap, record what happened per step."""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from backends.base import Backend, EnergyMeter
from harness.errors import BenchError
from harness.results.schema import ConvergenceEvent, SeedCurve, TelemetrySample
from workloads.base import Workload
from workloads.training import TrainableInstance

EVAL_OFFSET = 1_000_000
"""Held-out batches are `batch_at(EVAL_OFFSET + i)`: batch indices training never reaches (it
trains batch i at step i, and the step cap stays far below). Each index seeds its own draw,
so these are batches training never sees (for the text workloads, windows of the same
corpus; docs/convergence.md)."""

RunKind = Literal["device", "reference", "honest"]


@dataclass
class SeedRun:
    """One seed being trained: the built instance, its eval curve and per-step records."""

    seed: int
    kind: RunKind
    backend: Backend
    instance: TrainableInstance
    eval_inputs: list[Any]
    eval_every: int
    curve: SeedCurve
    train_loss: list[float | None] = field(default_factory=list)
    grad_norm: list[float | None] = field(default_factory=list)
    step_times: list[float] = field(default_factory=list)
    events: list[ConvergenceEvent] = field(default_factory=list)
    stopped: bool = False
    """True after a non-finite loss, gradient or weight: the run cannot go on."""
    meter: EnergyMeter | None = None
    """The backend's energy meter (device runs): on over each stretch of training steps
    between two evals, off while evaluating."""
    metering: bool = False
    energy_j: float | None = 0.0
    """Joules metered so far; None once a window could not be read (energy_note says why)."""
    energy_method: str = ""
    energy_note: str = ""
    telemetry: list[TelemetrySample] = field(default_factory=list)

    def event(self, step: int, kind: str, value: float | None = None) -> None:
        self.events.append(
            ConvergenceEvent(seed=self.seed, step=step, kind=kind, value=value, run=self.kind)  # type: ignore[arg-type]
        )

    @property
    def steps(self) -> int:
        return self.curve.steps_trained

    def last_eval(self) -> float | None:
        return self.curve.eval_loss[-1] if self.curve.eval_loss else None

    def finish(self) -> SeedCurve:
        """The stored curve, with the median step time; drops the built model."""
        if self.step_times:
            self.curve.step_time_s = statistics.median(self.step_times)
        del self.instance
        self.eval_inputs = []
        return self.curve


def memory_in_use(backend: Backend) -> int:
    """Bytes in use now: the device allocator's count where torch has one for the device
    type, else this process's resident set (the host is the device)."""
    device = backend.device()
    module = getattr(torch, device.type, None)
    allocated = getattr(module, "memory_allocated", None) if device.type != "cpu" else None
    if allocated is not None:
        try:
            return int(allocated(device))
        except (RuntimeError, TypeError, AssertionError):
            pass
    statm = Path("/proc/self/statm")
    if statm.exists():
        return int(statm.read_text().split()[1]) * _page_size()
    return 0


def _page_size() -> int:
    import os

    return os.sysconf("SC_PAGE_SIZE")


def start(
    backend: Backend,
    workload: Workload,
    dtype: str,
    preset: str,
    params: dict[str, Any],
    seed: int,
    kind: RunKind,
    eval_every: int,
    eval_batches: int,
) -> SeedRun:
    """Build `workload` on `backend` under `seed` (the same initial weights on every device)
    and evaluate it once before training (step 0)."""
    instance = workload.build_seeded(backend, dtype, preset, params, seed)
    if not isinstance(instance, TrainableInstance):
        raise BenchError(f"workload '{workload.name}' does not train to a target.")
    run = SeedRun(
        seed=seed,
        kind=kind,
        backend=backend,
        instance=instance,
        eval_inputs=[instance.batch_at(EVAL_OFFSET + i) for i in range(eval_batches)],
        eval_every=eval_every,
        curve=SeedCurve(seed=seed, run=kind),
        meter=backend.energy_meter() if kind == "device" else None,
    )
    _evaluate(run)
    return run


def _evaluate(run: SeedRun) -> None:
    """Mean loss over the held-out batches in eval mode, the memory in use, and a check that
    every weight is finite; records the point on the curve."""
    instance = run.instance
    instance.model.eval()
    with torch.no_grad(), instance.ctx.autocast():
        losses = [float(instance.loss(batch)) for batch in run.eval_inputs]
    loss = sum(losses) / len(losses)
    finite = math.isfinite(loss)
    run.curve.eval_steps.append(run.steps)
    run.curve.eval_loss.append(loss if finite else None)
    run.curve.memory_bytes.append(memory_in_use(run.backend))
    weights_ok = all(bool(torch.isfinite(p).all()) for p in instance.model.parameters())
    if run.meter is not None:
        run.curve.energy_j.append(run.energy_j)
        values = run.backend.telemetry()
        if values:
            run.telemetry.append(TelemetrySample(seed=run.seed, step=run.steps, values=values))
    if not (finite and weights_ok):
        run.event(run.steps, "nonfinite", None if finite else loss)
        run.stopped = True


def train(
    run: SeedRun,
    until: int,
    target: float | None = None,
    soak_s: float | None = None,
    soak_from: int | None = None,
) -> None:
    """Train `run` up to `until` steps in total, evaluating every eval_every steps; stop early
    once an eval reaches `target` (unless soaking: then go on to `until`, or until `soak_s`
    seconds of training after step `soak_from`), or at a non-finite value.

    The step is the workload's own (Trainer.step: its optimizer, autocast, and a GradScaler
    in fp16); batch i at step i. A step the fp16 loss scaler skipped is recorded, not fatal.
    A device run's energy meter is on over the training steps only, and its telemetry is read
    at each eval (both off the timed steps)."""
    if target is not None and soak_from is None and _reached(run, target):
        return
    try:
        _train_steps(run, until, target, soak_s, soak_from)
    finally:
        _meter_off(run)


def _meter_on(run: SeedRun) -> None:
    if run.meter is not None and not run.metering:
        run.meter.start()
        run.metering = True


def _meter_off(run: SeedRun) -> None:
    """Close the energy window and add its joules (or keep the reason it has none)."""
    if run.meter is None or not run.metering:
        return
    run.metering = False
    reading = run.meter.stop()
    run.energy_method = reading.method
    if reading.joules is None:
        run.energy_j, run.energy_note = None, run.energy_note or reading.reason
    elif run.energy_j is not None:
        run.energy_j += reading.joules


def _train_steps(
    run: SeedRun,
    until: int,
    target: float | None,
    soak_s: float | None,
    soak_from: int | None,
) -> None:
    """train()'s loop; the energy window is on from the first step after an eval to the next."""
    instance, trainer = run.instance, run.instance.trainer
    scaler = trainer.scaler
    soak = soak_from is not None
    soak_time = 0.0
    while run.steps < until and not run.stopped:
        _meter_on(run)
        index = run.steps
        batch = instance.batch_at(index)
        scale = scaler.get_scale() if scaler.is_enabled() else None
        run.backend.synchronize()
        t0 = time.perf_counter()
        loss, norm = trainer.step(batch, grad_norm=True)
        loss_value = float(loss)
        run.backend.synchronize()
        elapsed = time.perf_counter() - t0
        run.step_times.append(elapsed)
        if soak and index >= (soak_from or 0):
            soak_time += elapsed
        norm_value = float(norm if norm is not None else math.nan)
        skipped = scale is not None and scaler.get_scale() < scale
        loss_ok, norm_ok = math.isfinite(loss_value), math.isfinite(norm_value)
        run.train_loss.append(loss_value if loss_ok else None)
        run.grad_norm.append(norm_value if norm_ok else None)
        run.curve.steps_trained += 1
        if skipped and loss_ok:
            run.event(index, "skipped")
        elif not (loss_ok and norm_ok):
            run.event(index, "nonfinite", loss_value if not loss_ok else norm_value)
            run.stopped = True
            break
        if run.steps % run.eval_every == 0:
            _meter_off(run)
            _evaluate(run)
            if target is not None and not soak and _reached(run, target):
                return
        if soak and soak_s is not None and soak_time >= soak_s:
            return


def _reached(run: SeedRun, target: float) -> bool:
    value = run.last_eval()
    return value is not None and value <= target
