"""Workloads: the contract, the built-in model families and probes, and the plugin registry."""

from workloads.base import BuildContext, Instance, Work, Workload, WorkloadError
from workloads.registry import all_workloads, get_workload

__all__ = [
    "BuildContext",
    "Instance",
    "Work",
    "Workload",
    "WorkloadError",
    "all_workloads",
    "get_workload",
]
