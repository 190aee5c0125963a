"""The one formatter of seconds, bytes, FLOP/s and other rates, and plain numbers.

Terminal tables (harness.cli.tables), the Markdown/HTML report (harness.report.build) and the
figures (harness.report.plots) all format through these functions, so one quantity reads the
same everywhere. Pure functions: no I/O, no state.

Conventions shared by every function here:
- ``None`` means "not measured" and formats as ``"-"``.
- Durations and rates use decimal SI prefixes (k = 1e3, M = 1e6, G = 1e9, T = 1e12);
  byte counts use binary prefixes (KiB = 2**10, MiB = 2**20, GiB = 2**30).
- The prefix is chosen from the magnitude, so a negative value reads like its positive twin
  with a minus sign.
- ``inf`` and ``nan`` are printed as Python prints them (``inf``, ``-inf``, ``nan``); an
  infinite value keeps the base unit, ``nan`` gets no unit.
"""

from __future__ import annotations

import math
from typing import Literal

MISSING = "-"
"""What every formatter returns for None."""

BinaryUnit = Literal["B", "KiB", "MiB", "GiB"]

_TIME_UNITS: tuple[tuple[str, float], ...] = (("s", 1.0), ("ms", 1e-3), ("us", 1e-6))
_BYTE_UNITS: tuple[tuple[BinaryUnit, int], ...] = (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10))
_BYTE_SCALE: dict[BinaryUnit, int] = {"B": 1, **dict(_BYTE_UNITS)}
_SI_PREFIXES: tuple[tuple[str, float], ...] = (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3))


def time_unit(seconds: float, *, micro: str = "us") -> tuple[str, float]:
    """The unit for showing `seconds`: (name, scale in seconds), the largest of s, ms, us, ns
    whose scale is <= |seconds|, so the value shows as 1 to 999 of that unit.

    `micro` names the microsecond unit ("us" for text, "µs" where the glyph renders, e.g.
    figure axes). 0 and values below 1 ns give ns; inf gives s; nan gives ns.
    """
    magnitude = abs(seconds)
    for unit, scale in _TIME_UNITS:
        if magnitude >= scale:
            return (micro if unit == "us" else unit), scale
    return "ns", 1e-9


def format_seconds(seconds: float | None) -> str:
    """A duration with 3 significant digits in the unit from `time_unit`: 0.00123 -> "1.23 ms",
    2.5 -> "2.5 s", 4e-10 -> "0.4 ns".

    None -> "-"; 0 -> "0 ns"; -0.002 -> "-2 ms"; inf -> "inf s"; nan -> "nan".
    """
    if seconds is None:
        return MISSING
    if math.isnan(seconds):
        return "nan"
    unit, scale = time_unit(seconds)
    return f"{seconds / scale:.3g} {unit}"


def format_bytes(count: float | None, *, unit: BinaryUnit | None = None, spec: str = ".1f") -> str:
    """A byte count in binary units: the largest of GiB, MiB, KiB whose size is <= |count|,
    the number formatted with the format `spec` (".1f" gives "1.5 MiB"; "g" gives "1.5 MiB"
    but "64 KiB" for a round size). Below 1 KiB: the plain count, "512 B".

    `unit` fixes the unit instead (for a column that must compare at a glance):
    format_bytes(3 * 2**30, unit="MiB") -> "3072.0 MiB".

    None -> "-"; 0 -> "0 B"; negative counts get the unit of their magnitude; inf -> "inf B";
    nan -> "nan".
    """
    if count is None:
        return MISSING
    if math.isnan(count):
        return "nan"
    if unit is None:
        for name, scale in _BYTE_UNITS:
            if abs(count) >= scale and not math.isinf(count):
                return f"{count / scale:{spec}} {name}"
        return f"{count} B" if isinstance(count, int) or math.isinf(count) else f"{count:g} B"
    return f"{count / _BYTE_SCALE[unit]:{spec}} {unit}"


def format_rate(value: float | None, unit: str = "") -> str:
    """A rate (FLOP/s, B/s, tokens/s, ...) with 3 significant digits and the largest SI prefix
    of T, G, M, k whose scale is <= |value|: (1.5e12, "FLOP/s") -> "1.5 TFLOP/s",
    (2500, "tokens/s") -> "2.5 ktokens/s", (12, "B/s") -> "12 B/s". An empty `unit` leaves
    only the prefix: (2e9, "") -> "2 G".

    None -> "-"; 0 -> "0 <unit>"; negative values get the prefix of their magnitude;
    inf -> "inf <unit>"; nan -> "nan".
    """
    if value is None:
        return MISSING
    if math.isnan(value):
        return "nan"
    if not math.isinf(value):
        for prefix, scale in _SI_PREFIXES:
            if abs(value) >= scale:
                return f"{value / scale:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}".strip()


def format_number(value: float | None, digits: int = 3) -> str:
    """A unitless number (ratio, deviation, p-value) with `digits` significant digits in
    Python's "g" format: 0.000123 -> "0.000123", 1234567 -> "1.23e+06".

    None -> "-"; 0 -> "0"; negative -> "-..."; inf -> "inf"; nan -> "nan".
    """
    return MISSING if value is None else f"{value:.{digits}g}"


def format_percent(fraction: float | None, digits: int = 1) -> str:
    """A fraction as a percentage with `digits` decimals: 0.256 -> "25.6%".

    None -> "-"; 0 -> "0.0%"; negative -> "-...%"; inf -> "inf%"; nan -> "nan%".
    """
    return MISSING if fraction is None else f"{fraction:.{digits}%}"
