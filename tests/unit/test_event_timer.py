"""EventTimer brackets a block with one device event pair: recording an event costs host time,
so one per iteration would be charged to launch-bound steps."""

from __future__ import annotations

from backends.accelerator import EventTimer


class CountingEvent:
    """A device event stand-in on a shared clock that advances only when `tick` runs."""

    records = 0
    clock_s = 0.0

    def __init__(self) -> None:
        self.at = 0.0

    def record(self) -> None:
        CountingEvent.records += 1
        self.at = CountingEvent.clock_s

    def elapsed_time(self, end: CountingEvent) -> float:
        return (end.at - self.at) * 1e3


def tick() -> None:
    CountingEvent.clock_s += 0.002


def test_one_event_pair_per_block() -> None:
    CountingEvent.records, CountingEvent.clock_s = 0, 0.0
    synchronizes: list[None] = []
    timer = EventTimer(CountingEvent, lambda: synchronizes.append(None))
    seconds = timer.time_block(tick, 100)
    assert CountingEvent.records == 2
    assert len(synchronizes) == 2
    assert abs(seconds - 0.2) < 1e-9
