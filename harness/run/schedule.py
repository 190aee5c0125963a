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
    segment. One segment per run with interleave `run`, one per group with `workload`, one
    per case with `case`."""

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
    group holding all its rounds. `case`: the groups in that order, one segment per case
    holding all its rounds back to back (a group's modes alternate which comes first, as
    `_group_round` does from round to round, by the group's place in the order). The order
    depends only on the keys' grouping, `rounds`, `seed` and `interleave`, so a stored seed
    reproduces it."""
    groups = case_groups(keys)
    if interleave == "case":
        order = list(groups)
        random.Random(seed).shuffle(order)
        return [
            Segment(jobs=[RoundJob(case=case, round=r) for r in range(rounds)])
            for place, group in enumerate(order)
            for case in (group if place % 2 == 0 else reversed(group))
        ]
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


def alive_together(keys: Sequence[CaseKey], interleave: Interleave) -> list[list[int]]:
    """For each case (by plan index), the other cases of the same model (workload and
    version, preset, parameters; any mode, dtype or batch) that a worker following
    `round_schedule` keeps built beside it: under `run` every such case of the run, under
    `workload` the other modes of its group, under `case` none. A case counts all of them,
    built before or after it, since each must fit beside the others for the run to go on."""
    if interleave == "case":
        return [[] for _ in keys]
    if interleave == "workload":
        same = [key.pair_key() for key in keys]
    else:
        same = [key.identity(ignoring=("mode", "dtype", "batch")) for key in keys]
    return [
        [j for j in range(len(keys)) if j != i and same[j] == same[i]] for i in range(len(keys))
    ]
