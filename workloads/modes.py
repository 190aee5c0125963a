"""The modes a workload may offer: a light module (no torch), so that a run's config
(harness.results.config) can refuse an unknown mode where it is built without loading a
model."""

from __future__ import annotations

from typing import Literal, get_args

CollectiveMode = Literal["all_reduce", "all_gather", "reduce_scatter", "broadcast", "all_to_all"]
"""Modes of the collectives probe (workloads/allreduce.py)."""

Mode = Literal[
    "infer",
    "train",
    "prefill",
    "decode",
    "sample",
    "probe",
    "copy",
    "triad",
    "converge",
    CollectiveMode,
]
"""`converge` trains to a target (harness.convergence) instead of timing a step."""

COLLECTIVE_MODES: tuple[str, ...] = get_args(CollectiveMode)
MODES: tuple[str, ...] = get_args(Mode)
