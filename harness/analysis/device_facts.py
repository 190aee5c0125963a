"""What a run says about its device beyond timings: energy (or why it was not measured), the
sustained-vs-burst matmul rates, and which kind of peak each MFU used. Pure over results."""

from __future__ import annotations

from harness.results.schema import CaseResult


def energy_not_measured(cases: list[CaseResult]) -> list[str]:
    """One line `energy: not measured (reason)` per distinct reason among the ok cases that
    have no energy figures: a device without an energy source says so once per run."""
    reasons = dict.fromkeys(
        case.energy_note
        for case in cases
        if case.status == "ok" and case.energy is None and case.energy_note
    )
    return [f"energy: not measured ({reason})" for reason in reasons]


def sustain_summary(case: CaseResult) -> str | None:
    """`burst X, sustained Y FLOP/s (ratio Z) over S s; clock a -> b MHz, ...` for a matmul
    case run with sustain_s > 0, else None."""
    extra = case.extra
    if extra.get("sustained_flops", 0.0) <= 0:
        return None
    text = (
        f"burst {extra['burst_flops'] / 1e9:.4g} GFLOP/s, sustained "
        f"{extra['sustained_flops'] / 1e9:.4g} GFLOP/s (ratio {extra['sustain_ratio']:.3f}) "
        f"over {extra.get('sustain_s', 0.0):.3g} s in {extra.get('sustain_windows', 0):.0f} "
        "windows"
    )
    samples = []
    for name, unit in (("clock_mhz", "MHz"), ("power_w", "W"), ("temperature_c", "C")):
        first, last = extra.get(f"burst_{name}"), extra.get(f"sustained_{name}")
        if first is not None and last is not None:
            samples.append(f"{name.split('_')[0]} {first:.4g} -> {last:.4g} {unit}")
    if samples:
        text += "; " + ", ".join(samples)
    else:
        text += "; no clock, power or temperature exposed"
    return text


def peak_kind(source: str | None) -> str:
    """The kind of peak an MFU used, from its source text: "spec", "sustained" or "burst"."""
    if not source:
        return ""
    if source.startswith("spec"):
        return "spec"
    if source.startswith("measured sustained"):
        return "sustained"
    return "burst"
