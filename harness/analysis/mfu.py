"""Peaks and MFU of a run, for analysis: the rules live in `harness.results.derive`, which the
store applies whenever a run is written or read; this module names them for analysis code.

`peaks` is the one rule for "the peak FLOP/s of a dtype": the MFU of each case and the compute
roof of the answer's roofline both come from it.
"""

from __future__ import annotations

from harness.results.derive import (
    MIN_PROBE_FLOPS,
    apply_peaks,
    measured_peaks,
    peaks,
    sustained_peaks,
    with_current_peaks,
)

__all__ = [
    "MIN_PROBE_FLOPS",
    "apply_peaks",
    "measured_peaks",
    "peaks",
    "sustained_peaks",
    "with_current_peaks",
]
