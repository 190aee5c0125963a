"""Peaks and MFU of a run: the backend's known spec peak per dtype, else this run's measured
matmul peak, chosen so that the figure is honest.

A measured peak only counts when it comes from a matmul probe large enough to approach the
device's maximum (a tiny probe measures overheads, and made other cases look faster than
"peak"); sweep probes are preferred to single shapes. An MFU above 100% means the peak is not
the device's maximum: it is dropped (`mfu_status == "above_100"`, the reason in words in
`mfu_note`), never reported silently.

`peaks` is the one rule for "the peak FLOP/s of a dtype": the MFU of each case and the compute
roof of the answer's roofline both come from it.
"""

from __future__ import annotations

from backends.base import DeviceInfo
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


def peaks(cases: list[CaseResult], device: DeviceInfo) -> dict[str, PeakFigure]:
    """Per dtype, the peak FLOP/s to measure against: the device's known spec (with the source
    of that dtype's figure), else the best qualifying matmul probe among `cases` (see
    `measured_peaks`). A dtype with neither is absent."""
    found = measured_peaks(cases)
    for dtype, flops in device.peak_flops.items():
        source = device.peak_sources.get(dtype) or device.peak_source
        found[dtype] = PeakFigure(flops=flops, source=f"spec: {source}")
    return found


def apply_peaks(record: RunRecord) -> None:
    """Fill `record.peaks` (see `peaks`), `record.sustained_peaks` and each case's MFU with its
    `mfu_status` and the source of the peak it used, and an `mfu_note` saying in words why
    there is no MFU when there is none. Training cases use the sustained peak of their dtype
    when the run measured one (a training run holds the device at its power limit; the burst
    rate overstates what it can keep), every other case the peak in `record.peaks`."""
    record.peaks = peaks(record.cases, record.device)
    record.sustained_peaks = sustained_peaks(record.cases)
    for case in record.cases:
        case.mfu, case.peak_flops_source, case.mfu_note = None, None, None
        case.mfu_status = None
        if not case.achieved_flops:
            continue
        peak = record.peaks.get(case.key.dtype)
        if case.key.mode == "train":
            peak = record.sustained_peaks.get(case.key.dtype, peak)
        if peak is None:
            case.mfu_status = "no_peak"
            case.mfu_note = (
                f"no known {case.key.dtype} peak for this device and no matmul probe of at "
                f"least {MIN_PROBE_FLOPS:.3g} FLOP per step in this run"
            )
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
