"""Workloads: the contract, the built-in model families and probes, and the plugin registry.

The names below are imported on first use (PEP 562), so that `workloads.modes`, the list of
modes a run's config checks, can be read without loading torch."""

from __future__ import annotations

import importlib
from typing import Any

_LAZY: dict[str, str] = {
    "BuildContext": "workloads.base",
    "Instance": "workloads.base",
    "Work": "workloads.base",
    "Workload": "workloads.base",
    "WorkloadError": "workloads.base",
    "all_workloads": "workloads.registry",
    "get_workload": "workloads.registry",
}

__all__ = [
    "BuildContext",
    "Instance",
    "Work",
    "Workload",
    "WorkloadError",
    "all_workloads",
    "get_workload",
]


def __getattr__(name: str) -> Any:
    """Import a public name on first use."""
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'workloads' has no attribute {name!r}")
