"""Scaling efficiency of cases measured at several world sizes (pure; no torch)."""

from __future__ import annotations

from harness.results.schema import CaseResult


def scaling_ladder(nproc: int) -> list[int]:
    """Processes per node measured by --scaling: 1, 2, 4, ... below nproc, then nproc."""
    ladder = [1]
    while ladder[-1] * 2 < nproc:
        ladder.append(ladder[-1] * 2)
    if ladder[-1] != nproc:
        ladder.append(nproc)
    return ladder


def apply_scaling_efficiency(cases: list[CaseResult]) -> None:
    """Set `scaling_efficiency` on every ok case that has a smaller-world ok case of the same
    key: (throughput / world) / (throughput_base / world_base), base = smallest world size.
    1.0 is perfect linear scaling. Collectives probes are skipped (their throughput is a
    bandwidth, not work)."""
    groups: dict[str, list[CaseResult]] = {}
    for case in cases:
        if case.status == "ok" and case.throughput and not case.collectives:
            groups.setdefault(case.key.identity(ignoring=("nproc",)), []).append(case)
    for members in groups.values():
        if len({c.key.nproc for c in members}) < 2:
            continue
        base = min(members, key=lambda c: c.key.nproc)
        assert base.throughput is not None
        per_process = base.throughput.value / base.key.nproc
        for case in members:
            assert case.throughput is not None
            case.scaling_efficiency = (case.throughput.value / case.key.nproc) / per_process
