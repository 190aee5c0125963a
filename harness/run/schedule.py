"""The order of round jobs: every case in every round, groups shuffled per round with a
stored seed, the modes of a group back to back in alternating order.

Pure planning (no torch, no processes): the runner executes what `round_schedule` returns.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from pydantic import BaseModel

from harness.results.config import Interleave
from harness.results.schema import CaseKey


class RoundJob(BaseModel):
    """Measure case number `case` (its index in the plan) for round `round`."""

    case: int
    round: int


class Segment(BaseModel):
    """Jobs that share the worker's cache of built cases; the cache is emptied after each
    segment. One segment per run with interleave `run`, one per group with `workload`."""

    jobs: list[RoundJob]


def case_groups(keys: Sequence[CaseKey]) -> list[list[int]]:
    """Plan indices grouped by `CaseKey.pair_key` (the modes of one workload, dtype, batch,
    preset, params), groups and members in plan order."""
    groups: dict[str, list[int]] = {}
    for index, key in enumerate(keys):
        groups.setdefault(key.pair_key(), []).append(index)
    return list(groups.values())


def _group_round(group: list[int], round_index: int) -> list[RoundJob]:
    """A group's jobs in one round: plan order in even rounds, reversed in odd ones, so each
    mode of a pair is measured first as often as second."""
    members = group if round_index % 2 == 0 else list(reversed(group))
    return [RoundJob(case=i, round=round_index) for i in members]


def round_schedule(
    keys: Sequence[CaseKey], rounds: int, seed: int, interleave: Interleave
) -> list[Segment]:
    """Every (case, round) job exactly once, in run order.

    `run`: one segment; round r visits the groups in the order of
    `random.Random(seed + r).shuffle`, each group's modes back to back (`_group_round`).
    `workload`: the groups in the order of `random.Random(seed).shuffle`, one segment per
    group holding all its rounds. The order depends only on the keys' grouping, `rounds`,
    `seed` and `interleave`, so a stored seed reproduces it."""
    groups = case_groups(keys)
    if interleave == "workload":
        order = list(groups)
        random.Random(seed).shuffle(order)
        return [
            Segment(jobs=[job for r in range(rounds) for job in _group_round(group, r)])
            for group in order
        ]
    jobs: list[RoundJob] = []
    for r in range(rounds):
        order = list(groups)
        random.Random(seed + r).shuffle(order)
        for group in order:
            jobs += _group_round(group, r)
    return [Segment(jobs=jobs)]
