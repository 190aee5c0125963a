"""Derived figures of a run, computed from its stored facts and the current peak table.

A run stores facts: the device's name, settings and fp32 downcasts, and each case's achieved
FLOP/s and matmul-probe extras. Everything computed from them and the peak table
(`backends.peaks`) is derived here, by one function (`apply_peaks`), whenever a run is written
(`harness.results.store.save_run`) and again whenever it is read (`load_run`): the device's
peak fields, the run's peaks and sustained peaks, and each case's MFU, the peak it used,
`mfu_status` and `mfu_note`. A fix to the peak table therefore reaches files written before it.
Nothing here reads what an earlier derivation wrote, and nothing reads prose.

The peak of a dtype is the device's known spec, else this run's measured matmul peak, chosen so
that the figure is honest. A measured peak only counts when it comes from a matmul probe large
enough to approach the device's maximum (a tiny probe measures overheads, and made other cases
look faster than "peak"); sweep probes are preferred to single shapes. An MFU above 100% means
the peak is not the device's maximum: it is dropped (`mfu_status == "above_100"`, the reason in
words in `mfu_note`), never reported silently.

fp32 cases of a run whose fp32 downcasts were on (TF32 on CUDA, HF32 on Ascend: the device then
runs fp32 matmuls or convolutions at the reduced-precision rate) are measured against the
TF32/HF32 peak, and their `peak_flops_source` says so.
"""

from __future__ import annotations

from backends.device import DeviceInfo
from backends.peaks import lookup_peaks
from harness.results.schema import CaseResult, PeakFigure, RunRecord

MIN_PROBE_FLOPS = 2.0 * 1024**3
"""FLOPs per step of the smallest matmul probe that may define a measured peak (n = 1024)."""

MATMUL = "matmul"


def _qualifies(case: CaseResult) -> bool:
    """An ok matmul probe of at least MIN_PROBE_FLOPS per step, or a sweep that tried such
    shapes (its best shape may be smaller: the sweep found it fastest)."""
    if case.key.workload != MATMUL or case.status != "ok" or not case.achieved_flops:
        return False
    if case.extra.get("sweep", 0.0) > 0:
        return case.extra.get("sweep_largest_step_flops", 0.0) >= MIN_PROBE_FLOPS
    return (case.flops_per_step or 0.0) >= MIN_PROBE_FLOPS


def measured_peaks(cases: list[CaseResult]) -> dict[str, PeakFigure]:
    """Per dtype, the best qualifying matmul probe: sweeps first, then the fastest."""
    best: dict[str, tuple[tuple[bool, float], CaseResult]] = {}
    for case in cases:
        if not _qualifies(case):
            continue
        rank = (case.extra.get("sweep", 0.0) > 0, case.achieved_flops or 0.0)
        dtype = case.key.dtype
        if dtype not in best or rank > best[dtype][0]:
            best[dtype] = (rank, case)
    peaks: dict[str, PeakFigure] = {}
    for dtype, ((is_sweep, flops), case) in best.items():
        kind = "matmul sweep" if is_sweep else "matmul probe"
        peaks[dtype] = PeakFigure(flops=flops, source=f"measured: {kind} ({case.key.id})")
    return peaks


def sustained_peaks(cases: list[CaseResult]) -> dict[str, PeakFigure]:
    """Per dtype, the best sustained rate (last window) of a qualifying matmul probe run with
    sustain_s > 0."""
    best: dict[str, PeakFigure] = {}
    for case in cases:
        rate = case.extra.get("sustained_flops", 0.0)
        if not _qualifies(case) or rate <= 0:
            continue
        dtype = case.key.dtype
        if dtype not in best or rate > best[dtype].flops:
            held = case.extra.get("sustain_s", 0.0)
            best[dtype] = PeakFigure(
                flops=rate,
                source=f"measured sustained: matmul held {held:g} s, last window ({case.key.id})",
            )
    return best


def spec_peaks(device: DeviceInfo) -> dict[str, PeakFigure]:
    """Per dtype name, the device's known spec peak with the source of that figure."""
    return {
        dtype: PeakFigure(
            flops=flops, source=f"spec: {device.peak_sources.get(dtype) or device.peak_source}"
        )
        for dtype, flops in device.peak_flops.items()
    }


def peaks(cases: list[CaseResult], device: DeviceInfo) -> dict[str, PeakFigure]:
    """Per dtype, the peak FLOP/s to measure against: the device's known spec (with the source
    of that dtype's figure), else the best qualifying matmul probe among `cases` (see
    `measured_peaks`). A dtype with neither is absent."""
    return {**measured_peaks(cases), **spec_peaks(device)}


def with_current_peaks(device: DeviceInfo) -> DeviceInfo:
    """`device` with its peak fields from the current peak table when the table knows its
    name. When it does not, figures an earlier table gave (`peak_model` set) are removed and
    the backend's own figures (`peak_model` empty) are kept."""
    found = lookup_peaks(device.name)
    if found is None:
        if not device.peak_model:
            return device
        return device.model_copy(
            update={
                "peak_flops": {},
                "peak_bandwidth": None,
                "peak_source": "",
                "peak_sources": {},
                "peak_model": "",
            }
        )
    return device.model_copy(
        update={
            "peak_flops": dict(found.flops),
            "peak_bandwidth": found.bandwidth,
            "peak_source": found.source,
            "peak_sources": dict(found.sources),
            "peak_model": found.model,
        }
    )


def reduced_fp32_kind(downcasts: list[str]) -> str:
    """The peak-table dtype name fp32 work runs at with these downcasts on: `hf32` when any
    names HF32 (Ascend), else `tf32`."""
    return "hf32" if any("hf32" in d.lower() for d in downcasts) else "tf32"


def _fp32_downcast_peak(
    device: DeviceInfo, measured: dict[str, PeakFigure]
) -> tuple[PeakFigure | None, str]:
    """The peak of fp32 cases when the run's fp32 downcasts were on, and the reduced kind's
    name: the device's TF32/HF32 spec, else the measured fp32 matmul peak (that probe ran with
    the same downcasts), else None."""
    downcasts = device.fp32_downcasts or []
    kind = reduced_fp32_kind(downcasts)
    why = f"fp32 ran as {kind.upper()} ({', '.join(downcasts)})"
    if kind in device.peak_flops:
        spec = spec_peaks(device)[kind]
        return PeakFigure(flops=spec.flops, source=f"{spec.source}; {kind} peak: {why}"), kind
    if "fp32" in measured:
        found = measured["fp32"]
        return PeakFigure(flops=found.flops, source=f"{found.source}; {why}"), kind
    return None, kind


def apply_peaks(record: RunRecord) -> None:
    """Derive, from the run's stored facts and the current peak table, and store in `record`:
    the device's peak fields (`with_current_peaks`), `record.peaks` (see `peaks`),
    `record.sustained_peaks`, and each case's MFU with its `mfu_status`, the source of the peak
    it used and an `mfu_note` saying in words why there is no MFU when there is none.

    Training cases use the sustained peak of their dtype when the run measured one (a training
    run holds the device at its power limit; the burst rate overstates what it can keep),
    every other case the peak in `record.peaks`; fp32 cases of a run with fp32 downcasts on use
    the TF32/HF32 peak (see `_fp32_downcast_peak`). Idempotent: derived fields are recomputed,
    never read."""
    record.device = with_current_peaks(record.device)
    measured = measured_peaks(record.cases)
    record.peaks = {**measured, **spec_peaks(record.device)}
    record.sustained_peaks = sustained_peaks(record.cases)
    downcast = bool(record.device.fp32_downcasts)
    for case in record.cases:
        case.mfu, case.peak_flops_source, case.mfu_note = None, None, None
        case.mfu_status = None
        if not case.achieved_flops:
            continue
        dtype = case.key.dtype
        peak = record.peaks.get(dtype)
        missing = (
            f"no known {dtype} peak for this device and no matmul probe of at least "
            f"{MIN_PROBE_FLOPS:.3g} FLOP per step in this run"
        )
        if dtype == "fp32" and downcast:
            peak, kind = _fp32_downcast_peak(record.device, measured)
            missing = (
                f"fp32 ran as {kind.upper()} ({', '.join(record.device.fp32_downcasts or [])}) "
                f"and there is no known {kind} peak for this device and no fp32 matmul probe "
                f"of at least {MIN_PROBE_FLOPS:.3g} FLOP per step in this run"
            )
        if case.key.mode == "train":
            peak = record.sustained_peaks.get(dtype, peak)
        if peak is None:
            case.mfu_status = "no_peak"
            case.mfu_note = missing
            continue
        mfu = case.achieved_flops / peak.flops
        case.peak_flops_source = peak.source
        if mfu > 1.0:
            case.mfu_status = "above_100"
            case.mfu_note = (
                f"MFU would be {mfu:.0%} against {peak.source}, above 100%: that peak is not "
                "this device's maximum, so MFU is not reported"
            )
            continue
        case.mfu, case.mfu_status = mfu, "reported"
