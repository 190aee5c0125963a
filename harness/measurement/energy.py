"""Energy figures of a case from one EnergyReading of its measurement window. Pure."""

from __future__ import annotations

from backends.base import EnergyReading
from harness.results.schema import CaseEnergy


def case_energy(
    reading: EnergyReading, seconds_per_step: float, items_per_step: float, item_unit: str
) -> tuple[CaseEnergy | None, str | None]:
    """(energy figures, None) when the reading has joules over a positive window, else
    (None, the reason). Joules per step = average power over the window x seconds per step,
    so warm-up and cold start in the window do not count as extra steps."""
    if reading.joules is None:
        return None, reading.reason or "the energy source gave no reading"
    if reading.seconds <= 0:
        return None, "the energy window had no length"
    power = reading.joules / reading.seconds
    per_step = power * seconds_per_step
    return (
        CaseEnergy(
            joules=reading.joules,
            seconds=reading.seconds,
            average_power_w=power,
            joules_per_step=per_step,
            joules_per_item=per_step / items_per_step if items_per_step > 0 else None,
            item_unit=item_unit,
            method=reading.method,
        ),
        None,
    )
