"""Workload lookup: the built-ins plus installed plugins of the `bench.workloads` group."""

from __future__ import annotations

from importlib.metadata import entry_points

from workloads.allreduce import AllReduceWorkload
from workloads.base import Workload, WorkloadError
from workloads.mlp import MLPWorkload

ENTRY_POINT_GROUP = "bench.workloads"
BUILTINS: dict[str, type[Workload]] = {cls.name: cls for cls in (MLPWorkload, AllReduceWorkload)}


def _plugins() -> dict[str, type[Workload]]:
    found: dict[str, type[Workload]] = {}
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        if ep.name in BUILTINS:
            continue
        try:
            cls = ep.load()
        except Exception:  # a broken plugin must not break the built-ins; listed separately
            continue
        if isinstance(cls, type) and issubclass(cls, Workload):
            found[ep.name] = cls
    return found


def plugin_errors() -> dict[str, str]:
    """Workload plugins that failed to import or are not Workloads, with the reason."""
    errors: dict[str, str] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            cls = ep.load()
        except Exception as exc:
            errors[ep.name] = f"failed to import {ep.value}: {type(exc).__name__}: {exc}"
            continue
        if not (isinstance(cls, type) and issubclass(cls, Workload)):
            errors[ep.name] = f"{ep.value} is not a subclass of workloads.base.Workload"
    return errors


def all_workloads() -> dict[str, type[Workload]]:
    """Every usable workload class by name, built-ins first."""
    return {**BUILTINS, **_plugins()}


def get_workload(name: str) -> Workload:
    """An instance of the named workload; raises WorkloadError naming the choices."""
    workloads = all_workloads()
    if name not in workloads:
        broken = plugin_errors()
        if name in broken:
            raise WorkloadError(f"workload plugin '{name}' {broken[name]}.")
        raise WorkloadError(f"unknown workload '{name}'; choose from: {', '.join(workloads)}.")
    return workloads[name]()
